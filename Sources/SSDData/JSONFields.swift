import Foundation

/// One JSON object of an annotation file, read field by field: every error names the file, the
/// entry (`images[3]`) and the field (`images[3].width`), so a bad COCO or Create ML file is
/// one clear line rather than a crash or a silently wrong set.
struct JSONEntry {
    /// The annotation file.
    let path: String
    /// Where the object sits in the file: `images[3]`, `[12].annotations[0]`.
    let field: String
    let object: [String: Any]

    /// `value` as an object, or an error naming `field`.
    init(_ value: Any, path: String, field: String) throws {
        guard let object = value as? [String: Any] else {
            throw DataError.badAnnotation(path: path, field: field, reason: "expected an object, got \(JSONEntry.kind(of: value))")
        }
        self.path = path
        self.field = field
        self.object = object
    }

    func error(_ key: String, _ reason: String) -> DataError {
        .badAnnotation(path: path, field: key.isEmpty ? field : "\(field).\(key)", reason: reason)
    }

    /// The field's value; missing is an error.
    func value(_ key: String) throws -> Any {
        guard let value = object[key], !(value is NSNull) else { throw error(key, "missing") }
        return value
    }

    func has(_ key: String) -> Bool { object[key] != nil && !(object[key] is NSNull) }

    /// A finite number (JSON booleans are not numbers here).
    func number(_ key: String) throws -> Double {
        let v = try value(key)
        guard let n = JSONEntry.number(v) else { throw error(key, "expected a number, got \(JSONEntry.kind(of: v))") }
        return n
    }

    /// A whole number within ±2⁵³ (JSON's exact integers).
    func integer(_ key: String) throws -> Int {
        let n = try number(key)
        guard n == n.rounded(), abs(n) <= 9_007_199_254_740_992 else { throw error(key, "expected a whole number, got \(n)") }
        return Int(n)
    }

    /// A whole number of pixels, 1 … 10⁶.
    func size(_ key: String) throws -> Int {
        let n = try number(key)
        guard n == n.rounded(), n >= 1, n < 1e6 else {
            throw error(key, "expected a size in pixels (a whole number 1…999999), got \(JSONEntry.format(n))")
        }
        return Int(n)
    }

    /// A non-empty string.
    func string(_ key: String) throws -> String {
        let v = try value(key)
        guard let s = v as? String else { throw error(key, "expected a string, got \(JSONEntry.kind(of: v))") }
        guard !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw error(key, "empty") }
        return s
    }

    /// A list.
    func list(_ key: String) throws -> [Any] {
        let v = try value(key)
        guard let list = v as? [Any] else { throw error(key, "expected a list, got \(JSONEntry.kind(of: v))") }
        return list
    }

    /// A list of exactly `count` finite numbers.
    func numbers(_ key: String, count: Int) throws -> [Double] {
        let list = try list(key)
        guard list.count == count else { throw error(key, "expected \(count) numbers, got \(list.count) values") }
        return try list.enumerated().map { i, v in
            guard let n = JSONEntry.number(v) else { throw error("\(key)[\(i)]", "expected a number, got \(JSONEntry.kind(of: v))") }
            return n
        }
    }

    /// The nested object at `key`.
    func entry(_ key: String) throws -> JSONEntry {
        try JSONEntry(try value(key), path: path, field: "\(field).\(key)")
    }

    static func number(_ value: Any) -> Double? {
        guard let n = value as? NSNumber, !isBoolean(n), n.doubleValue.isFinite else { return nil }
        return n.doubleValue
    }

    static func isBoolean(_ n: NSNumber) -> Bool {
        // JSONSerialization gives true and false as NSNumbers of type 'c' (char), numbers never.
        String(cString: n.objCType) == "c"
    }

    static func kind(of value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case let n as NSNumber: return isBoolean(n) ? "a boolean" : "the number \(format(n.doubleValue))"
        case is String: return "a string"
        case is [Any]: return "a list"
        case is [String: Any]: return "an object"
        default: return "\(type(of: value))"
        }
    }

    static func format(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
    }
}

extension DataLists {
    /// The JSON document of an annotation file (at most `FileLimits.list` bytes), or an error
    /// naming the file.
    static func readAnnotationJSON(_ url: URL) throws -> Any {
        try readJSON(url) { .badAnnotation(path: url.path, field: "(document)", reason: "not valid JSON (\($0))") }
    }
}
