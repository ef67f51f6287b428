import CLibXML2
import Foundation

/// A minimal element tree (names, text, children, the line each element starts on).
final class XMLNode {
    let name: String
    let line: Int
    var text = ""
    var children: [XMLNode] = []
    init(name: String, line: Int) {
        self.name = name
        self.line = line
    }
    func children(named name: String) -> [XMLNode] { children.filter { $0.name == name } }
}

/// Parses XML with libxml2 in its strict mode and turns the document into an `XMLNode` tree.
///
/// Why libxml2 directly: Foundation's `XMLParser` on Linux runs libxml2 in recovery mode (an
/// unclosed `<object>` was closed silently and `parse()` still succeeded) and its callbacks
/// crash on some hostile documents (a processing instruction without data dereferences NULL —
/// found by fuzzing). Here libxml2 stops at the first well-formedness error and reports its code,
/// line and the names involved, which become a message in words.
///
/// Nothing outside the document is read: no network (`XML_PARSE_NONET`), no external DTD or
/// entity (neither `XML_PARSE_DTDLOAD` nor `XML_PARSE_NOENT` is given), and an entity reference
/// other than XML's predefined five is refused, so entity bombs expand nothing.
enum XMLTreeBuilder {
    /// The root of `data`'s tree; a `DataError.badAnnotation` on field "(document)" naming the
    /// line and what is wrong if the document is not well-formed.
    static func parse(_ data: Data, path: String) throws -> XMLNode {
        _ = initialized
        func fail(_ line: Int, _ message: String) -> DataError {
            DataError.badAnnotation(path: path, field: "(document)", reason: "line \(max(1, line)): \(message)")
        }
        guard !data.isEmpty else { throw fail(1, "the file is empty") }
        guard data.count < Int(Int32.max) else { throw fail(1, "the file is too large for an annotation") }
        guard let context = xmlNewParserCtxt() else { throw fail(1, "libxml2 could not allocate a parser") }
        defer { xmlFreeParserCtxt(context) }
        // libxml2 goes on after the first error and keeps only the last one, which is often a
        // consequence of the first; a structured handler keeps the first (and stops libxml2
        // printing to standard error). libxml2 hands the handler the context as its user data.
        let key = UnsafeMutableRawPointer(context)
        firstErrors.withLock { $0[key] = FirstError() }
        defer { _ = firstErrors.withLock { $0.removeValue(forKey: key) } }
        context.pointee.sax.pointee.serror = { userData, error in
            guard let userData, let error, error.pointee.level.rawValue >= XML_ERR_ERROR.rawValue else { return }
            XMLTreeBuilder.firstErrors.withLock { table in
                guard table[userData]?.code == 0 else { return }
                table[userData] = FirstError(error.pointee)
            }
        }
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOCDATA.rawValue | XML_PARSE_NOWARNING.rawValue)
        let document = data.withUnsafeBytes { bytes in
            xmlCtxtReadMemory(context, bytes.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(bytes.count),
                              path, nil, options)
        }
        defer { if let document { xmlFreeDoc(document) } }
        guard let document, context.pointee.wellFormed != 0 else {
            if let first = firstErrors.withLock({ $0[key] }), first.code != 0 { throw fail(first.line, explain(first)) }
            if let error = xmlCtxtGetLastError(context), error.pointee.code != 0 {
                let last = FirstError(error.pointee)
                throw fail(last.line, explain(last))
            }
            throw fail(1, "not well-formed XML")
        }
        guard let root = xmlDocGetRootElement(document) else { throw fail(1, "no XML element found") }
        return try tree(root, fail: fail)
    }

    /// What an `xmlError` says, copied out of libxml2's memory.
    struct FirstError {
        var code = 0, line = 0, int1 = 0
        var str1: String?, str2: String?, message: String?
        init() {}
        init(_ error: xmlError) {
            code = Int(error.code)
            line = Int(error.line)
            int1 = Int(error.int1)
            str1 = error.str1.map { String(cString: $0) }
            str2 = error.str2.map { String(cString: $0) }
            message = error.message.map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) }
        }
    }

    /// The first error of each parse under way, keyed by its parser context.
    static let firstErrors = Locked<[UnsafeMutableRawPointer: FirstError]>([:])

    /// libxml2 initialises its globals once, before any thread parses (`DataLists.build` parses
    /// annotations on several threads).
    private static let initialized: Void = { xmlInitParser() }()

    /// `node` and its element descendants as an `XMLNode` tree; an element's text is its direct
    /// text and CDATA, as a SAX reader would gather it.
    private static func tree(_ node: xmlNodePtr, fail: (Int, String) -> DataError) throws -> XMLNode {
        let result = XMLNode(name: String(cString: node.pointee.name), line: Int(xmlGetLineNo(node)))
        var child = node.pointee.children
        while let current = child {
            switch current.pointee.type {
            case XML_ELEMENT_NODE:
                result.children.append(try tree(current, fail: fail))
            case XML_TEXT_NODE, XML_CDATA_SECTION_NODE:
                if let content = current.pointee.content { result.text += String(cString: content) }
            case XML_ENTITY_REF_NODE:
                let name = current.pointee.name.map { String(cString: $0) } ?? "?"
                throw fail(result.line, "an entity reference &\(name); inside <\(result.name)>: annotations may use only XML's "
                           + "predefined entities (&amp; &lt; &gt; &quot; &apos;)")
            default:
                break  // comments, processing instructions
            }
            child = current.pointee.next
        }
        return result
    }

    /// libxml2's error in words. `str1` and `int1` carry the open element and its line for the
    /// errors about tags (see libxml2's parser.c).
    static func explain(_ error: FirstError) -> String {
        let code = error.code
        let open = error.str1.map { "<\($0)> (line \(error.int1))" }
        let detail = error.message.map { " [libxml2: \($0)]" } ?? ""
        switch code {
        case 4: return "the document is empty or holds no element"
        case 5: return "content after the end of the root element: a document has one root"
        case 76:
            let end = error.str2.map { "</\($0)>" } ?? "an end tag"
            return "\(end) does not match the open element \(open ?? "?"): an end tag is missing or misspelt"
        case 77, 85, 86:
            if let open { return "the document ends while \(open) is still open: its end tag is missing" }
            return "the document ends too early"
        case 73: return "a tag is not finished ('>' missing)\(detail)"
        case 74: return "an end tag is missing\(detail)"
        case 9: return "a character that XML does not allow\(detail)"
        case 6, 7, 8, 10...13: return "a malformed character reference (&#…;)\(detail)"
        case 89: return "an entity that refers to itself or expands too much (an entity bomb)"
        case 14...26, 36, 37, 87, 88, 90, 104:
            return "an entity reference that is undeclared or malformed (write &amp; for a literal '&')\(detail)"
        case 27...30, 82: return "an external or unparsed entity: external content is never read"
        case 38...44: return "a malformed attribute\(detail)"
        case 45, 80: return "a malformed comment ('--' inside, or '-->' missing)"
        case 46, 47: return "a malformed processing instruction (<?…?>)"
        case 48...61, 83, 94, 95: return "a malformed document type declaration (<!DOCTYPE …>)\(detail)"
        case 62, 63: return "a malformed CDATA section"
        case 68: return "a tag without a name ('<' must start a tag; write &lt; in text)"
        case 31, 32, 79, 81, 101: return "text that is not in the declared encoding, or an unknown encoding\(detail)"
        case 56, 57, 96, 108, 109: return "a malformed XML declaration (<?xml …?>)\(detail)"
        default: return "not well-formed XML\(detail)"
        }
    }
}

/// A value behind a lock, for the few globals that C callbacks must reach.
final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
