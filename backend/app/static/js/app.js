// Chitram's only script: upload helpers, copy buttons and the error toast. No inline code anywhere
// (the Content-Security-Policy forbids it), so everything is wired here by ids and data attributes.
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
      fileName.textContent = file.name + " (" + formatMegabytes(file.size) + ")";
      if (allowed.indexOf(file.type) === -1) {
        return fail("Only JPEG and PNG images can be uploaded; this file is " + (file.type || "of an unknown type") + ".");
      }
      if (file.size === 0) { return fail("This file is empty."); }
      if (file.size > maxBytes) {
        return fail("This file is " + formatMegabytes(file.size) + "; the limit is " + formatMegabytes(maxBytes) + ".");
      }
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
      button.disabled = !input.files.length;
      if (event.detail.successful) { progress.value = 100; }
    });
  }

  function setupCopyButtons() {
    document.addEventListener("click", function (event) {
      var button = event.target.closest("[data-copy-target]");
      if (!button) return;
      var field = document.getElementById(button.dataset.copyTarget);
      if (!field) return;
      var done = function () { button.textContent = "Copied!"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
      } else {
        field.select();
        try { document.execCommand("copy"); done(); } catch (error) { /* the text stays selected */ }
      }
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

  document.addEventListener("DOMContentLoaded", function () {
    setupUpload();
    setupCopyButtons();
    setupErrorToast();
  });
})();
