import CPNG
import CTurboJPEG
import Foundation

/// An 8-bit RGB image: `height` rows of `width` pixels, three interleaved bytes (R, G, B) each.
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// `width * height * 3` bytes, row-major.
    public var pixels: [UInt8]

    /// An image filled with one colour.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        self.width = max(0, width)
        self.height = max(0, height)
        var p = [UInt8](repeating: 0, count: self.width * self.height * 3)
        if fill != (0, 0, 0) {
            for i in 0..<(self.width * self.height) { p[3 * i] = fill.0; p[3 * i + 1] = fill.1; p[3 * i + 2] = fill.2 }
        }
        pixels = p
    }

    /// An image over existing bytes; `pixels.count` must be `width * height * 3`.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0, pixels.count == width * height * 3 else {
            throw DataError.invalidArgument("RGB image of \(width)×\(height) needs \(max(0, width * height * 3)) bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// Image decoding and encoding with libjpeg-turbo and libpng.
public enum ImageCodec {
    /// The most pixels an image may declare: 2²⁷ = 134,217,728 (128 Mi), checked against the
    /// header before any pixel memory is allocated. It admits every camera photograph (50 MP full
    /// frame, 102 MP medium format) and large scans, and bounds one decoded frame to 384 MiB of
    /// RGB (512 MiB while an alpha channel is dropped). SSD sees 300×300 pixels, so larger images
    /// bring nothing but memory; a header declaring more (a 1 KB file claiming 16384×16384) is
    /// refused with `DataError.badImage`.
    public static let maximumPixels = 1 << 27

    /// Frames above this many pixels (16 Mi, a 48 MiB RGB frame) are decoded once at 1/8 scale
    /// before the full frame is allocated, so a truncated JPEG is refused without the large
    /// allocation. Smaller frames, which every training image is, skip that pass.
    static let precheckPixels = 1 << 24

    /// Decodes the image file at `url` (JPEG or PNG, told apart by content) to RGB. The file must
    /// be a regular file of at most `FileLimits.image` bytes declaring at most `maximumPixels`.
    public static func load(_ url: URL) throws -> RGBImage {
        try decode(try readFile(url, limit: FileLimits.image), path: url.path)
    }

    /// The width and height of the image file at `url`, after checking that all of its data is
    /// there and decodes: a JPEG is decoded at 1/8 scale (which reads every entropy-coded byte, so
    /// a truncated or corrupt file is found at a small fraction of the memory and time of a full
    /// decode), a PNG in full. Throws `DataError.unreadableFile` or `.badImage` naming the file.
    public static func inspect(_ url: URL) throws -> (width: Int, height: Int) {
        let data = try readFile(url, limit: FileLimits.image)
        switch try kind(of: data, path: url.path) {
        case .png:
            let image = try decodePNG(data, path: url.path)
            return (image.width, image.height)
        case .jpeg:
            return try verifyJPEG(data, path: url.path)
        }
    }

    enum Kind { case jpeg, png }

    /// JPEG or PNG by content, or `DataError.badImage` saying what the bytes are not.
    static func kind(of data: Data, path: String) throws -> Kind {
        if data.count >= 8, data.prefix(8).elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if data.count >= 3, data[data.startIndex] == 0xFF, data[data.startIndex + 1] == 0xD8 { return .jpeg }
        throw DataError.badImage(path: path, reason: data.isEmpty ? "empty file (0 bytes)" : "neither a JPEG nor a PNG file")
    }

    /// `DataError.badImage` unless `width`×`height` is positive and within `maximumPixels`.
    static func checkBudget(_ width: Int, _ height: Int, format: String, path: String) throws {
        guard width > 0, height > 0 else {
            throw DataError.badImage(path: path, reason: "\(format) header declares \(width)×\(height) pixels")
        }
        let (pixels, overflow) = width.multipliedReportingOverflow(by: height)
        guard !overflow, pixels <= maximumPixels else {
            throw DataError.badImage(path: path, reason: "\(format) header declares \(width)×\(height) pixels, more than the "
                                     + "\(maximumPixels) (128 Mi) an image may have (ImageCodec.maximumPixels)")
        }
    }

    /// Decodes JPEG or PNG bytes to RGB, as PIL's `Image.open(path).convert('RGB')` would:
    /// grey is replicated, palettes are looked up, alpha is dropped (not composited), 16-bit
    /// samples are reduced to 8 bits, CMYK JPEGs are converted. `path` only names the source in errors.
    public static func decode(_ data: Data, path: String = "<memory>") throws -> RGBImage {
        switch try kind(of: data, path: path) {
        case .png: return try decodePNG(data, path: path)
        case .jpeg: return try decodeJPEG(data, path: path)
        }
    }

    // MARK: JPEG

    /// Decodes JPEG bytes (baseline or progressive; greyscale, YCbCr, CMYK or YCCK) to RGB with
    /// the accurate integer DCT and fancy upsampling (libjpeg's defaults, which PIL uses). The
    /// header must declare at most `maximumPixels`; a frame above `precheckPixels` is first
    /// decoded at 1/8 scale so that truncated data is refused before the full frame is allocated.
    public static func decodeJPEG(_ data: Data, path: String = "<memory>") throws -> RGBImage {
        let header = try jpegHeader(data, path: path)
        if header.width * header.height > precheckPixels { _ = try verifyJPEG(data, path: path) }
        guard let handle = tjInitDecompress() else { throw DataError.badImage(path: path, reason: "cannot start the JPEG decoder") }
        defer { tjDestroy(handle) }
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> RGBImage in
            guard let base = raw.bindMemory(to: UInt8.self).baseAddress else { throw DataError.badImage(path: path, reason: "empty file") }
            let w = header.width, h = header.height
            let channels = header.isCMYK ? 4 : 3
            let format = header.isCMYK ? TJPF_CMYK : TJPF_RGB
            var decoded = [UInt8](repeating: 0, count: w * h * channels)
            let status = decoded.withUnsafeMutableBufferPointer { out in
                tjDecompress2(handle, base, UInt(raw.count), out.baseAddress, Int32(w), 0, Int32(h), Int32(format.rawValue), 0)
            }
            try checkJPEGStatus(status, handle, path: path)
            if !header.isCMYK { return RGBImage(unchecked: w, h, decoded) }
            return RGBImage(unchecked: w, h, cmykToRGB(decoded, count: w * h, inverted: hasAdobeMarker(raw)))
        }
    }

    /// The JPEG's declared size and colour model, checked against `maximumPixels`.
    static func jpegHeader(_ data: Data, path: String) throws -> (width: Int, height: Int, isCMYK: Bool) {
        guard let handle = tjInitDecompress() else { throw DataError.badImage(path: path, reason: "cannot start the JPEG decoder") }
        defer { tjDestroy(handle) }
        return try data.withUnsafeBytes { raw in
            guard let base = raw.bindMemory(to: UInt8.self).baseAddress else { throw DataError.badImage(path: path, reason: "empty file") }
            var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
            if tjDecompressHeader3(handle, base, UInt(raw.count), &width, &height, &subsampling, &colorspace) != 0 {
                throw DataError.badImage(path: path, reason: "JPEG header: \(errorString(handle))")
            }
            try checkBudget(Int(width), Int(height), format: "JPEG", path: path)
            let isCMYK = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
            return (Int(width), Int(height), isCMYK)
        }
    }

    /// Decodes the JPEG at 1/8 scale (libjpeg-turbo then reads every entropy-coded byte but
    /// computes only DC values) and returns its full size; truncated or corrupt data throws.
    static func verifyJPEG(_ data: Data, path: String) throws -> (width: Int, height: Int) {
        let header = try jpegHeader(data, path: path)
        guard let handle = tjInitDecompress() else { throw DataError.badImage(path: path, reason: "cannot start the JPEG decoder") }
        defer { tjDestroy(handle) }
        // TurboJPEG picks the largest scaling factor that fits: with every dimension a ceiling of
        // 1/8, that is 1/8, which it supports for every image.
        let w = (header.width + 7) / 8, h = (header.height + 7) / 8
        var scratch = [UInt8](repeating: 0, count: w * h * 4)
        try data.withUnsafeBytes { raw in
            let base = raw.bindMemory(to: UInt8.self).baseAddress!
            let status = scratch.withUnsafeMutableBufferPointer { out in
                tjDecompress2(handle, base, UInt(raw.count), out.baseAddress, Int32(w), 0, Int32(h),
                              Int32((header.isCMYK ? TJPF_CMYK : TJPF_RGB).rawValue), 0)
            }
            try checkJPEGStatus(status, handle, path: path)
        }
        return (header.width, header.height)
    }

    /// Fatal errors always fail; of the warnings, a premature end (a truncated file) and corrupt
    /// data fail too, as PIL's "image file is truncated" does. Other warnings (extraneous bytes
    /// before a marker, ...) leave a complete image, which PIL accepts as well.
    static func checkJPEGStatus(_ status: Int32, _ handle: tjhandle, path: String) throws {
        guard status != 0 else { return }
        let message = errorString(handle)
        if tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) || message.localizedCaseInsensitiveContains("premature end") {
            let truncated = message.localizedCaseInsensitiveContains("premature end") ? "truncated (" + message + ")" : message
            throw DataError.badImage(path: path, reason: "JPEG data: \(truncated)")
        }
    }

    private static func errorString(_ handle: tjhandle) -> String {
        guard let s = tjGetErrorStr2(handle) else { return "unknown error" }
        return String(cString: s)
    }

    /// Whether the JPEG has an APP14 "Adobe" segment, whose CMYK data is stored inverted.
    static func hasAdobeMarker(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 2
        while i + 4 <= bytes.count {
            guard bytes[i] == 0xFF else { return false }
            let marker = bytes[i + 1]
            if marker == 0xFF { i += 1; continue }
            if marker == 0xDA || marker == 0xD9 { return false }  // start of scan / end of image
            let length = Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            if marker == 0xEE, length >= 7, i + 9 <= bytes.count,
               bytes[i + 4] == 0x41, bytes[i + 5] == 0x64, bytes[i + 6] == 0x6F, bytes[i + 7] == 0x62, bytes[i + 8] == 0x65 {
                return true
            }
            i += 2 + length
        }
        return false
    }

    /// CMYK to RGB as PIL converts: with K' = 255 − K, each channel is K' − C·K'/255 (rounded
    /// the way PIL's MULDIV255 does). Adobe files store inverted samples, which PIL un-inverts first.
    static func cmykToRGB(_ cmyk: [UInt8], count: Int, inverted: Bool) -> [UInt8] {
        var rgb = [UInt8](repeating: 0, count: count * 3)
        for p in 0..<count {
            var c = Int(cmyk[4 * p]), m = Int(cmyk[4 * p + 1]), y = Int(cmyk[4 * p + 2]), k = Int(cmyk[4 * p + 3])
            if inverted { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k }
            let nk = 255 - k
            func mulDiv255(_ a: Int, _ b: Int) -> Int { let t = a * b + 128; return ((t >> 8) + t) >> 8 }
            rgb[3 * p] = UInt8(clamping: nk - mulDiv255(c, nk))
            rgb[3 * p + 1] = UInt8(clamping: nk - mulDiv255(m, nk))
            rgb[3 * p + 2] = UInt8(clamping: nk - mulDiv255(y, nk))
        }
        return rgb
    }

    /// Encodes RGB as a baseline JPEG with 4:2:0 chroma subsampling at `quality` (1–100).
    public static func encodeJPEG(_ image: RGBImage, quality: Int = 90) throws -> Data {
        guard let handle = tjInitCompress() else { throw DataError.invalidArgument("cannot start the JPEG encoder") }
        defer { tjDestroy(handle) }
        var output: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let status = image.pixels.withUnsafeBufferPointer { src in
            tjCompress2(handle, src.baseAddress, Int32(image.width), 0, Int32(image.height), Int32(TJPF_RGB.rawValue),
                        &output, &size, Int32(TJSAMP_420.rawValue), Int32(max(1, min(100, quality))), 0)
        }
        defer { if let output { tjFree(output) } }
        guard status == 0, let output else { throw DataError.invalidArgument("JPEG encoding failed: \(errorString(handle))") }
        return Data(bytes: output, count: Int(size))
    }

    // MARK: PNG

    /// Decodes PNG bytes with libpng's simplified API. Colour-space chunks (gAMA, cHRM, sRGB,
    /// iCCP) are ignored, as PIL ignores them: the samples come out as stored. The header must
    /// declare at most `maximumPixels`, and the image data must be long enough to hold them
    /// (`checkPNGDataLength`) before the frame is allocated. (The simplified API decodes into one
    /// caller-allocated frame; libpng's row-by-row API reports errors with `longjmp`, which Swift
    /// cannot catch without a C shim, so the length bound stands in for progressive decoding.)
    public static func decodePNG(_ data: Data, path: String = "<memory>") throws -> RGBImage {
        let bytes = withoutColorSpaceChunks(data)
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        // libpng reads from the memory between begin and finish: keep one pointer for both.
        let (decoded, w, h, hasAlpha) = try bytes.withUnsafeBytes { raw -> ([UInt8], Int, Int, Bool) in
            guard png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) != 0 else {
                throw DataError.badImage(path: path, reason: "PNG header: \(pngMessage(&image))")
            }
            let w = Int(image.width), h = Int(image.height)
            try checkBudget(w, h, format: "PNG", path: path)
            try checkPNGDataLength(raw, width: w, height: h, path: path)
            let hasAlpha = image.format & png_uint_32(PNG_FORMAT_FLAG_ALPHA) != 0
            image.format = png_uint_32(hasAlpha ? PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA : PNG_FORMAT_FLAG_COLOR)
            image.flags |= png_uint_32(PNG_IMAGE_FLAG_16BIT_sRGB)  // 16-bit samples are not linear light
            let channels = hasAlpha ? 4 : 3
            var decoded = [UInt8](repeating: 0, count: w * h * channels)
            let finished = decoded.withUnsafeMutableBytes { out in
                png_image_finish_read(&image, nil, out.baseAddress, png_int_32(w * channels), nil)
            }
            guard finished != 0 else {
                let message = pngMessage(&image)
                let truncated = ["beyond end of data", "Not enough image data", "unexpected end"].contains { message.localizedCaseInsensitiveContains($0) }
                throw DataError.badImage(path: path, reason: "PNG data: " + (truncated ? "truncated (\(message))" : message))
            }
            return (decoded, w, h, hasAlpha)
        }
        if !hasAlpha { return RGBImage(unchecked: w, h, decoded) }
        // Drop alpha in place (pixel p moves down from 4p to 3p ≤ 4p), without a second frame.
        var rgb = decoded
        rgb.withUnsafeMutableBufferPointer { b in
            for p in 0..<(w * h) { b[3 * p] = b[4 * p]; b[3 * p + 1] = b[4 * p + 1]; b[3 * p + 2] = b[4 * p + 2] }
        }
        rgb.removeLast(w * h)
        return RGBImage(unchecked: w, h, rgb)
    }

    /// Refuses a PNG whose IDAT chunks are too short to hold its declared pixels, before the
    /// frame is allocated: DEFLATE compresses at most 1032:1, so `width`×`height` pixels at the
    /// header's bit depth need at least their raw size / 1032 bytes of image data. (A 1 KB file
    /// declaring 16384×16384 would otherwise cost a 768 MiB frame before libpng finds the end.)
    static func checkPNGDataLength(_ raw: UnsafeRawBufferPointer, width: Int, height: Int, path: String) throws {
        guard raw.count >= 33 else { return }  // libpng has read the header: signature + IHDR
        let depth = Int(raw[24]), colourType = Int(raw[25])
        let samples = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colourType] ?? 1
        var stored = 0, i = 8
        while i + 8 <= raw.count {
            let length = Int(raw[i]) << 24 | Int(raw[i + 1]) << 16 | Int(raw[i + 2]) << 8 | Int(raw[i + 3])
            if raw[i + 4] == 0x49, raw[i + 5] == 0x44, raw[i + 6] == 0x41, raw[i + 7] == 0x54 {  // IDAT
                stored += min(length, raw.count - i - 8)
            }
            if raw[i + 4] == 0x49, raw[i + 5] == 0x45, raw[i + 6] == 0x4E, raw[i + 7] == 0x44 { break }  // IEND
            i += 12 + length
        }
        let rawBytes = height * ((width * samples * max(1, depth) + 7) / 8)
        let needed = rawBytes / 1032
        if stored < needed {
            throw DataError.badImage(path: path, reason: "PNG truncated: its image data has \(stored) bytes, and \(width)×\(height) "
                                     + "pixels need at least \(needed) even at DEFLATE's best compression")
        }
    }

    private static func pngMessage(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            let chars = raw.bindMemory(to: CChar.self)
            let end = chars.firstIndex(of: 0) ?? chars.count
            return String(decoding: raw.prefix(end), as: UTF8.self)
        }
    }

    /// The PNG bytes with gAMA, cHRM, sRGB and iCCP chunks removed, or the bytes unchanged if
    /// the chunk structure is not well formed (libpng then reports the problem).
    static func withoutColorSpaceChunks(_ data: Data) -> Data {
        let bytes = [UInt8](data)
        var out = [UInt8](bytes.prefix(8))
        var i = 8
        var changed = false
        while i + 12 <= bytes.count {
            let length = Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
            let end = i + 12 + length
            guard length >= 0, end <= bytes.count else { return data }
            let type = String(decoding: bytes[(i + 4)..<(i + 8)], as: UTF8.self)
            if ["gAMA", "cHRM", "sRGB", "iCCP"].contains(type) {
                changed = true
            } else {
                out.append(contentsOf: bytes[i..<end])
            }
            i = end
            if type == "IEND" { break }
        }
        if !changed { return data }
        if i < bytes.count { out.append(contentsOf: bytes[i...]) }
        return Data(out)
    }

    /// Encodes RGB as an 8-bit PNG.
    public static func encodePNG(_ image: RGBImage) throws -> Data {
        var png = png_image()
        png.version = png_uint_32(PNG_IMAGE_VERSION)
        png.width = png_uint_32(image.width)
        png.height = png_uint_32(image.height)
        png.format = png_uint_32(PNG_FORMAT_FLAG_COLOR)
        defer { png_image_free(&png) }
        var size: Int = 0
        let stride = png_int_32(image.width * 3)
        let sized = image.pixels.withUnsafeBytes { src in
            png_image_write_to_memory(&png, nil, &size, 0, src.baseAddress, stride, nil)
        }
        guard sized != 0, size > 0 else { throw DataError.invalidArgument("PNG encoding failed: \(pngMessage(&png))") }
        var out = Data(count: size)
        let written = out.withUnsafeMutableBytes { dst in
            image.pixels.withUnsafeBytes { src in
                png_image_write_to_memory(&png, dst.baseAddress, &size, 0, src.baseAddress, stride, nil)
            }
        }
        guard written != 0 else { throw DataError.invalidArgument("PNG encoding failed: \(pngMessage(&png))") }
        return out.prefix(size)
    }

    /// Writes `image` to `url` as PNG or JPEG, chosen by the extension (.png, .jpg/.jpeg).
    public static func save(_ image: RGBImage, to url: URL, jpegQuality: Int = 90) throws {
        switch url.pathExtension.lowercased() {
        case "png": try writeFileAtomically(try encodePNG(image), to: url)
        case "jpg", "jpeg": try writeFileAtomically(try encodeJPEG(image, quality: jpegQuality), to: url)
        default: throw DataError.invalidArgument("\(url.path): unknown image extension (use .png, .jpg or .jpeg)")
        }
    }
}

extension RGBImage {
    /// Wraps bytes whose count the caller has already made right.
    init(unchecked width: Int, _ height: Int, _ pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}
