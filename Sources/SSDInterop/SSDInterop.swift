// Interop: .pth reading (zip and legacy), restricted unpickler, VGG16 conversion (issue 4).
