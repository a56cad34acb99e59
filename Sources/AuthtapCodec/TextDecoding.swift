import Foundation

/// A decoded body as text, converted to UTF-8.
public struct DecodedText: Sendable, Equatable {
    /// The text, or nil when the bytes are not text in any charset this module accepts.
    public var text: String?
    /// The charset converted from when it was not UTF-8 or ASCII: "utf-16le", "utf-16be", "iso-8859-1" or
    /// "windows-1252"; nil otherwise.
    public var charset: String?
    /// When `text` is nil, why, e.g. "not valid UTF-8".
    public var failure: String?

    public init(text: String?, charset: String? = nil, failure: String? = nil) {
        self.text = text
        self.charset = charset
        self.failure = failure
    }
}

/// Turns a body into text following the WHATWG order of evidence: byte order mark, declared charset, sniffing.
public enum TextDecoding {
    /// Decodes `bytes` to a String.
    ///
    /// A BOM wins (UTF-8's is stripped; UTF-16 LE/BE). Then the `charset=` of `contentType`: utf-8, us-ascii,
    /// utf-16 (endianness by shape, else LE), utf-16le, utf-16be, iso-8859-1/latin1 (decoded as windows-1252, as
    /// WHATWG does, since servers mislabel it), windows-1252; another charset is accepted only for pure ASCII bytes.
    /// With no declared charset: BOM-less UTF-16 recognised by shape when the bytes hold NULs (ASCII-heavy UTF-16
    /// is also valid UTF-8, full of NULs, so shape is checked first), else valid UTF-8. A declared utf-8 body that
    /// is invalid UTF-8 is not text.
    ///
    /// - Parameter truncated: the bytes were cut at a limit, so an incomplete trailing UTF-8 or UTF-16 sequence is
    ///   dropped instead of making the text invalid.
    public static func utf8(_ bytes: [UInt8], contentType: String?, truncated: Bool) -> DecodedText {
        // A body cut after the first byte of a UTF-16 BOM holds no character yet.
        if truncated && (bytes == [0xFF] || bytes == [0xFE]) { return DecodedText(text: "") }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { return utf8Text(bytes.dropFirst(3), truncated: truncated) }
        if bytes.starts(with: [0xFF, 0xFE]) { return utf16Text(bytes.dropFirst(2), bigEndian: false, truncated) }
        if bytes.starts(with: [0xFE, 0xFF]) { return utf16Text(bytes.dropFirst(2), bigEndian: true, truncated) }

        if let label = declaredCharset(contentType) {
            guard let charset = Charset(label: label) else {
                if bytes.allSatisfy({ $0 < 0x80 }) { return DecodedText(text: String(decoding: bytes, as: UTF8.self)) }
                return DecodedText(text: nil, failure: "unsupported charset '\(label)'")
            }
            switch charset {
            case .utf8:
                return utf8Text(bytes[...], truncated: truncated)
            case .ascii:
                if bytes.allSatisfy({ $0 < 0x80 }) { return DecodedText(text: String(decoding: bytes, as: UTF8.self)) }
                // WHATWG maps the us-ascii label to windows-1252: servers send Latin text under it.
                return windows1252Text(bytes, reportedAs: "windows-1252")
            case .utf16:
                return utf16Text(bytes[...], bigEndian: utf16Shape(bytes) ?? false, truncated)
            case .utf16LE:
                return utf16Text(bytes[...], bigEndian: false, truncated)
            case .utf16BE:
                return utf16Text(bytes[...], bigEndian: true, truncated)
            case .latin1:
                return windows1252Text(bytes, reportedAs: "iso-8859-1")
            case .windows1252:
                return windows1252Text(bytes, reportedAs: "windows-1252")
            }
        }

        if bytes.contains(0), let bigEndian = utf16Shape(bytes) {
            let sniffed = utf16Text(bytes[...], bigEndian: bigEndian, truncated)
            if sniffed.text != nil { return sniffed }
        }
        return utf8Text(bytes[...], truncated: truncated)
    }

    /// The charsets accepted, by their WHATWG labels.
    enum Charset {
        case utf8, ascii, utf16, utf16LE, utf16BE, latin1, windows1252

        init?(label: String) {
            switch label {
            case "utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8":
                self = .utf8
            case "us-ascii", "ascii", "ansi_x3.4-1968":
                self = .ascii
            case "utf-16":
                self = .utf16
            case "utf-16le", "unicode", "ucs-2", "csunicode", "iso-10646-ucs-2", "unicodefeff":
                self = .utf16LE
            case "utf-16be", "unicodefffe":
                self = .utf16BE
            case "iso-8859-1", "iso8859-1", "iso_8859-1", "iso88591", "iso_8859-1:1987", "latin1", "l1", "cp819",
                "ibm819", "iso-ir-100", "csisolatin1":
                self = .latin1
            case "windows-1252", "cp1252", "x-cp1252":
                self = .windows1252
            default:
                return nil
            }
        }
    }

    /// The lower-cased `charset` parameter of a Content-Type value, unquoted; nil when absent or empty.
    static func declaredCharset(_ contentType: String?) -> String? {
        guard let contentType else { return nil }
        // Bytes, not Foundation's trimming: it runs for every body the writer decodes.
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 }
        func trimmed(_ part: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
            var part = part
            while let first = part.first, isSpace(first) { part = part.dropFirst() }
            while let last = part.last, isSpace(last) { part = part.dropLast() }
            return part
        }
        let bytes = Array(contentType.utf8)
        for parameter in bytes.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false).dropFirst() {
            guard let equals = parameter.firstIndex(of: UInt8(ascii: "=")) else { continue }
            let name = trimmed(parameter[..<equals])
            guard name.count == 7, name.map({ $0 | 0x20 }).elementsEqual("charset".utf8) else { continue }
            var value = trimmed(parameter[(equals + 1)...])
            if value.count >= 2, value.first == UInt8(ascii: "\""), value.last == UInt8(ascii: "\"") {
                value = trimmed(value.dropFirst().dropLast())
            }
            return value.isEmpty ? nil : String(decoding: value, as: UTF8.self).lowercased()
        }
        return nil
    }

    // MARK: UTF-8

    static func utf8Text(_ bytes: ArraySlice<UInt8>, truncated: Bool) -> DecodedText {
        let complete = truncated ? bytes.prefix(completeUTF8Length(bytes)) : bytes
        guard let text = String(validating: complete, as: UTF8.self) else {
            return DecodedText(text: nil, failure: "not valid UTF-8")
        }
        return DecodedText(text: text)
    }

    /// The length of `bytes` without a trailing sequence whose lead byte promises more bytes than follow it.
    static func completeUTF8Length(_ bytes: ArraySlice<UInt8>) -> Int {
        guard !bytes.isEmpty else { return 0 }
        // A sequence is at most 4 bytes, so its lead byte is among the last 4.
        for back in 1...min(4, bytes.count) {
            let index = bytes.endIndex - back
            let byte = bytes[index]
            guard byte & 0xC0 == 0x80 else {
                let needed: Int
                switch byte {
                case 0xC0...0xDF: needed = 2
                case 0xE0...0xEF: needed = 3
                case 0xF0...0xF7: needed = 4
                default: needed = 1
                }
                return back < needed ? bytes.count - back : bytes.count
            }
        }
        return bytes.count
    }

    // MARK: UTF-16

    /// Recognises BOM-less UTF-16 of ASCII-heavy text: most code units have a zero high byte, so most bytes at
    /// odd offsets (little-endian) or even offsets (big-endian) are 0x00, while few on the other side are.
    /// Returns whether it is big-endian, or nil when the bytes do not look like UTF-16.
    static func utf16Shape(_ bytes: [UInt8]) -> Bool? {
        let units = bytes.count / 2
        guard units > 0 else { return nil }
        var evenZeros = 0
        var oddZeros = 0
        for index in 0..<(units * 2) where bytes[index] == 0 {
            if index % 2 == 0 { evenZeros += 1 } else { oddZeros += 1 }
        }
        if oddZeros * 2 > units && evenZeros * 4 < units { return false }
        if evenZeros * 2 > units && oddZeros * 4 < units { return true }
        return nil
    }

    static func utf16Text(_ bytes: ArraySlice<UInt8>, bigEndian: Bool, _ truncated: Bool) -> DecodedText {
        let charset = bigEndian ? "utf-16be" : "utf-16le"
        var bytes = bytes
        if bytes.count % 2 != 0 {
            guard truncated else { return DecodedText(text: nil, failure: "undecodable utf-16 text (odd length)") }
            bytes = bytes.dropLast()
        }
        var units: [UInt16] = []
        units.reserveCapacity(bytes.count / 2)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let first = UInt16(bytes[index])
            let second = UInt16(bytes[index + 1])
            units.append(bigEndian ? first << 8 | second : second << 8 | first)
            index += 2
        }
        // A lead surrogate at the end of a cut body lost its trail surrogate to the cut.
        if truncated, let last = units.last, UTF16.isLeadSurrogate(last) { units.removeLast() }

        var scalars = String.UnicodeScalarView()
        var iterator = units.makeIterator()
        var decoder = UTF16()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): scalars.append(scalar)
            case .emptyInput: return DecodedText(text: String(scalars), charset: charset)
            case .error: return DecodedText(text: nil, failure: "undecodable utf-16 text (unpaired surrogate)")
            }
        }
    }

    // MARK: windows-1252

    /// windows-1252 is ISO-8859-1 except for 0x80...0x9F, which hold these characters; the five bytes Microsoft
    /// left undefined map to the C1 controls, as WHATWG specifies, so every byte decodes.
    static let windows1252High: [UInt16] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
        0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
        0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
        0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ]

    static func windows1252Text(_ bytes: [UInt8], reportedAs charset: String) -> DecodedText {
        var scalars = String.UnicodeScalarView()
        for byte in bytes {
            let value = (0x80...0x9F).contains(byte) ? windows1252High[Int(byte) - 0x80] : UInt16(byte)
            // Every table entry is a BMP scalar outside the surrogates, so this never falls back.
            scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
        }
        return DecodedText(text: String(scalars), charset: charset)
    }
}
