// Data: VOC parsing, reference-format lists, image I/O, transforms, loader, synthetic set (issue 3).
