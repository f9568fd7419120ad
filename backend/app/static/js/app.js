// Chitram's only script: upload helpers, copy buttons, share links, the error toast and picture placeholders. No
// inline code anywhere (the Content-Security-Policy forbids it), so everything is wired here by ids,
// classes and data attributes.
(function () {
  "use strict";

  function showToast(message) {
    var toast = document.getElementById("toast");
    if (!toast) return;
    toast.textContent = message;
    toast.hidden = false;
    clearTimeout(showToast.timer);
    showToast.timer = setTimeout(function () { toast.hidden = true; }, 6000);
  }

  function formatMegabytes(bytes) {
    return (bytes / 1048576).toFixed(1) + " MB";
  }

  function formatSize(bytes) {
    if (bytes < 1024) return bytes + " bytes";
    if (bytes < 1048576) return Math.round(bytes / 1024) + " KB";
    return formatMegabytes(bytes);
  }

  function describeTooLarge(size, limit) {
    // Just over the limit, both round to the same "5.0 MB": then only exact bytes tell them apart.
    if (formatMegabytes(size) === formatMegabytes(limit)) {
      return "This file is " + size.toLocaleString("en") + " bytes; the limit is " + limit.toLocaleString("en") + " bytes.";
    }
    return "This file is " + formatMegabytes(size) + "; the limit is " + formatMegabytes(limit) + ".";
  }

  function setupUpload() {
    var form = document.getElementById("upload-form");
    if (!form) return;
    var input = document.getElementById("file-input");
    var dropzone = document.getElementById("dropzone");
    var preview = document.getElementById("preview");
    var fileName = document.getElementById("file-name");
    var errorBox = document.getElementById("client-error");
    var progress = document.getElementById("upload-progress");
    var button = document.getElementById("upload-button");
    var maxBytes = parseInt(form.dataset.maxBytes, 10);
    var allowed = form.dataset.allowedTypes.split(",");

    function fail(message) {
      errorBox.textContent = message;
      errorBox.hidden = false;
      button.disabled = true;
    }

    function check(file) {
      errorBox.hidden = true;
      if (preview.src) { URL.revokeObjectURL(preview.src); }
      preview.hidden = true;
      fileName.textContent = "";
      if (!file) { button.disabled = true; return; }
      fileName.textContent = file.name + " (" + formatSize(file.size) + ")";
      // Browsers name HEIC and AVIF files unevenly (often not at all): an unnamed type is left to the
      // server, which decides from the bytes anyway.
      if (file.type && allowed.indexOf(file.type) === -1) {
        return fail("Only " + form.dataset.allowedLabel + " images can be uploaded; this file is " + file.type + ".");
      }
      if (file.size === 0) { return fail("This file is empty."); }
      if (file.size > maxBytes) { return fail(describeTooLarge(file.size, maxBytes)); }
      // A format this browser cannot show (HEIC outside Safari) simply gets no preview.
      preview.onerror = function () { preview.hidden = true; };
      preview.src = URL.createObjectURL(file);
      preview.hidden = false;
      button.disabled = false;
      progress.value = 0;
    }

    input.addEventListener("change", function () { check(input.files[0]); });
    ["dragenter", "dragover"].forEach(function (name) {
      dropzone.addEventListener(name, function (event) { event.preventDefault(); dropzone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      dropzone.addEventListener(name, function () { dropzone.classList.remove("dragging"); });
    });
    dropzone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        check(input.files[0]);
      }
    });

    form.addEventListener("htmx:xhr:progress", function (event) {
      if (event.detail.lengthComputable) {
        progress.value = Math.round((event.detail.loaded / event.detail.total) * 100);
        progress.textContent = progress.value + "%";
      }
    });
    form.addEventListener("htmx:beforeRequest", function () { button.disabled = true; });
    form.addEventListener("htmx:afterRequest", function (event) {
      if (event.detail.successful) {
        progress.value = 100;
        // Sent: the same file again would be a duplicate, so wait for a new choice.
        button.disabled = true;
      } else {
        button.disabled = !input.files.length;
      }
    });
    form.addEventListener("htmx:afterSwap", function () {
      // On a phone the result (and the delete token) lands below the fold.
      document.getElementById("upload-result").scrollIntoView({ block: "nearest" });
    });
  }

  function setupCopyButtons() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest("[data-copy-target]");
      if (!button) return;
      var field = document.getElementById(button.dataset.copyTarget);
      if (!field) return;
      var done = function () { button.textContent = "Copied!"; };
      // A field copies its value; anything else (a <pre> of commands) its text.
      var text = "value" in field ? field.value : field.textContent;
      var select = function () {
        if ("select" in field) { field.select(); return; }
        window.getSelection().selectAllChildren(field);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, select);
      } else {
        select();
        try { document.execCommand("copy"); done(); } catch (error) { /* the text stays selected */ }
      }
    });
  }

  // The API's JSON errors (rate limits, CSRF from the API) are shown by their message, in words.
  function setupJsonErrors() {
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      var xhr = event.detail.xhr;
      if (!event.detail.shouldSwap || !xhr) return;
      if ((xhr.getResponseHeader("Content-Type") || "").indexOf("application/json") === -1) return;
      var message = "The request failed (" + xhr.status + ").";
      try {
        var body = JSON.parse(xhr.responseText);
        if (body && body.detail && typeof body.detail.message === "string") { message = body.detail.message; }
      } catch (error) { /* keep the generic message */ }
      var paragraph = document.createElement("p");
      paragraph.className = "error";
      paragraph.setAttribute("role", "alert");
      paragraph.textContent = message;
      event.detail.serverResponse = paragraph.outerHTML;
    });
  }

  function setupErrorToast() {
    document.body.addEventListener("htmx:responseError", function (event) {
      var status = event.detail.xhr ? event.detail.xhr.status : 0;
      showToast("Something went wrong (" + status + "). Please try again.");
    });
    document.body.addEventListener("htmx:sendError", function () {
      showToast("Could not reach the server. Check your connection and try again.");
    });
  }

  // A picture's blurred sketch lies under it until the picture has arrived (or failed: then its alt
  // text shows, not a sketch of something that is not there).
  function hidePlaceholder(image) {
    var wrapper = image.closest(".picture");
    var sketch = wrapper && wrapper.querySelector(".picture-placeholder");
    if (sketch) { sketch.hidden = true; }
  }

  // `complete` is true once a picture has arrived or failed (a lazy one not yet asked for is not).
  function hideSettledPlaceholders(root) {
    root.querySelectorAll(".picture-image").forEach(function (image) {
      if (!image.complete) { return; }
      // Failed before this script could hear of it (complete, yet nothing decoded).
      if (image.naturalWidth === 0 && fallBackToOriginal(image)) { return; }
      hidePlaceholder(image);
    });
  }

  // A variant that cannot be had (the server is busy rendering, or refuses an animation too long
  // to convert) gives way to the original where the browser reads that itself: once, then its alt text.
  function fallBackToOriginal(image) {
    var original = image.getAttribute("data-original");
    if (!original || image.getAttribute("src") === original) { return false; }
    image.removeAttribute("srcset");
    image.src = original;
    return true;
  }

  function setupPlaceholders() {
    // load and error do not bubble, but they pass the document on the way down: one listener
    // covers every picture, including those HTMX swaps in later.
    ["load", "error"].forEach(function (name) {
      document.addEventListener(name, function (event) {
        var image = event.target;
        if (!(image.classList && image.classList.contains("picture-image"))) { return; }
        if (name === "error" && fallBackToOriginal(image)) { return; }
        hidePlaceholder(image);
      }, true);
    });
  }

  // The CSRF token every page carries for HTMX (on <body>), for the few requests made with fetch.
  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"]; } catch (error) { return ""; }
  }

  // A private image's owner asks the API for a signed link (JSON both ways, so not an HTMX form).
  function setupShareLinks() {
    var form = document.getElementById("share-form");
    if (!form) return;
    var errorBox = document.getElementById("share-error");
    var result = document.getElementById("share-result");
    var field = document.getElementById("share-link");
    var expires = document.getElementById("share-expires");
    var button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      errorBox.hidden = true;
      button.disabled = true;
      fetch(form.dataset.shareUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify({ expires_in: parseInt(form.elements.expires_in.value, 10) })
      }).then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, status: response.status, body: body }; });
      }).then(function (answer) {
        if (!answer.ok) {
          var detail = answer.body && answer.body.detail;
          throw new Error(detail && typeof detail.message === "string" ? detail.message : "The link could not be made (" + answer.status + ").");
        }
        field.value = new URL(answer.body.url, window.location.href).href;
        result.hidden = false;
        result.querySelector("[data-copy-target]").textContent = "Copy";
        expires.textContent = "Works until " + new Date(answer.body.expires_at).toLocaleString() + ".";
        expires.hidden = false;
      }).catch(function (error) {
        errorBox.textContent = error.message || "Could not reach the server. Check your connection and try again.";
        errorBox.hidden = false;
      }).then(function () { button.disabled = false; });
    });
  }

  setupPlaceholders();  // now, not at DOMContentLoaded: a picture may arrive before that

  document.addEventListener("DOMContentLoaded", function () {
    hideSettledPlaceholders(document);  // those settled before this script ran
    setupUpload();
    setupCopyButtons();
    setupJsonErrors();
    setupErrorToast();
    setupShareLinks();
  });
})();
