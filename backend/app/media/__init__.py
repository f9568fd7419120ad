"""The media pipeline: what an uploaded file is, whether it is safe to keep, and what is made from it.

    formats      content types, extensions and magic bytes
    containers   walkers over JPEG segments, PNG chunks, RIFF (WebP) chunks, GIF blocks, ISOBMFF boxes
    census       dimensions and frames read from the headers, before any pixel is decoded
    metadata     lossless removal of EXIF (but the orientation), GPS, XMP, IPTC, comments, text
    validation   the upload checks in order: signature, declared type, limits, strip, full decode
    thumbnails   the still, oriented, fitted rendering every image gets

Everything here is synchronous and CPU-bound; services run it in worker threads.
"""
