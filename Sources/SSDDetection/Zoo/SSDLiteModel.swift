import SSDLayers

extension ModelDescription {
    /// torchvision's `ssdlite320_mobilenet_v3_large`.
    public static func ssdlite320(classCount: Int) -> ModelDescription {
        fatalError("ssdlite320: not yet")
    }
}
