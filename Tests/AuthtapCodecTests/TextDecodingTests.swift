import Testing

@testable import AuthtapCodec

private let json = #"{"error":"invalid_grant","error_description":"Code déjà utilisé – €"}"#

private func utf16(_ text: String, bigEndian: Bool) -> [UInt8] {
    text.utf16.flatMap { unit in
        let high = UInt8(truncatingIfNeeded: unit >> 8)
        let low = UInt8(truncatingIfNeeded: unit)
        return bigEndian ? [high, low] : [low, high]
    }
}

/// One body and what it should decode to.
struct TextCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var contentType: String?
    var truncated = false
    var expected: DecodedText
    var testDescription: String { name }
}

private let textCases: [TextCase] = [
    TextCase(
        name: "plain UTF-8", bytes: Array(json.utf8), contentType: "application/json", expected: .init(text: json)),
    TextCase(
        name: "declared utf-8, quoted, any case", bytes: Array(json.utf8),
        contentType: #"application/json; Charset="UTF-8""#, expected: .init(text: json)),
    TextCase(
        name: "UTF-8 BOM is stripped", bytes: [0xEF, 0xBB, 0xBF] + Array(json.utf8), contentType: nil,
        expected: .init(text: json)),
    TextCase(
        name: "UTF-8 BOM beats a declared charset", bytes: [0xEF, 0xBB, 0xBF] + Array("é".utf8),
        contentType: "text/plain; charset=iso-8859-1", expected: .init(text: "é")),
    TextCase(
        name: "UTF-16LE with BOM", bytes: [0xFF, 0xFE] + utf16(json, bigEndian: false), contentType: nil,
        expected: .init(text: json, charset: "utf-16le")),
    TextCase(
        name: "UTF-16BE with BOM", bytes: [0xFE, 0xFF] + utf16(json, bigEndian: true), contentType: "text/plain",
        expected: .init(text: json, charset: "utf-16be")),
    TextCase(
        name: "UTF-16LE declared, no BOM", bytes: utf16(json, bigEndian: false),
        contentType: "application/json; charset=utf-16le", expected: .init(text: json, charset: "utf-16le")),
    TextCase(
        name: "UTF-16BE declared, no BOM", bytes: utf16(json, bigEndian: true),
        contentType: "application/json;charset=UTF-16BE", expected: .init(text: json, charset: "utf-16be")),
    TextCase(
        name: "utf-16 declared, big-endian by shape", bytes: utf16(json, bigEndian: true),
        contentType: "text/plain; charset=utf-16", expected: .init(text: json, charset: "utf-16be")),
    TextCase(
        name: "UTF-16LE by shape", bytes: utf16(json, bigEndian: false), contentType: nil,
        expected: .init(text: json, charset: "utf-16le")),
    TextCase(
        name: "UTF-16BE by shape", bytes: utf16(json, bigEndian: true), contentType: "application/json",
        expected: .init(text: json, charset: "utf-16be")),
    TextCase(
        name: "UTF-16 with an emoji (surrogate pair)", bytes: [0xFF, 0xFE] + utf16("ok 🔑", bigEndian: false),
        contentType: nil, expected: .init(text: "ok 🔑", charset: "utf-16le")),
    TextCase(
        name: "ISO-8859-1", bytes: [0x63, 0x61, 0x66, 0xE9], contentType: "text/html; charset=ISO-8859-1",
        expected: .init(text: "café", charset: "iso-8859-1")),
    TextCase(
        name: "latin1 label decodes 0x80 as windows-1252 (WHATWG)", bytes: [0x80, 0x20, 0x35],
        contentType: "text/plain; charset=latin1", expected: .init(text: "€ 5", charset: "iso-8859-1")),
    TextCase(
        name: "windows-1252", bytes: [0x93, 0x80, 0x94, 0x20, 0x85, 0x81],
        contentType: "text/plain; charset=windows-1252",
        expected: .init(text: "“€” …\u{81}", charset: "windows-1252")),
    TextCase(
        name: "cp1252 label", bytes: [0x99], contentType: #"text/plain; charset="cp1252""#,
        expected: .init(text: "™", charset: "windows-1252")),
    TextCase(
        name: "us-ascii", bytes: Array("plain".utf8), contentType: "text/plain; charset=us-ascii",
        expected: .init(text: "plain")),
    TextCase(
        name: "us-ascii with high bytes is windows-1252 (WHATWG)", bytes: [0x80],
        contentType: "text/plain; charset=ascii",
        expected: .init(text: "€", charset: "windows-1252")),
    TextCase(
        name: "unsupported charset, ASCII bytes", bytes: Array("plain".utf8),
        contentType: "text/plain; charset=shift_jis",
        expected: .init(text: "plain")),
    TextCase(
        name: "unsupported charset, other bytes", bytes: [0x82, 0xA0], contentType: "text/plain; charset=Shift_JIS",
        expected: .init(text: nil, failure: "unsupported charset 'shift_jis'")),
    TextCase(
        name: "invalid UTF-8", bytes: [0x7B, 0xC3, 0x28, 0x7D], contentType: nil,
        expected: .init(text: nil, failure: "not valid UTF-8")),
    TextCase(
        name: "declared utf-8, invalid", bytes: [0x63, 0x61, 0x66, 0xE9], contentType: "text/plain; charset=utf-8",
        expected: .init(text: nil, failure: "not valid UTF-8")),
    TextCase(
        name: "binary", bytes: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D],
        contentType: nil,
        expected: .init(text: nil, failure: "not valid UTF-8")),
    TextCase(
        name: "UTF-8 cut mid-character, truncated", bytes: Array(Array("Code €".utf8).dropLast()), contentType: nil,
        truncated: true, expected: .init(text: "Code ")),
    TextCase(
        name: "UTF-8 cut mid-character, not truncated", bytes: Array(Array("Code €".utf8).dropLast()),
        contentType: nil,
        expected: .init(text: nil, failure: "not valid UTF-8")),
    TextCase(
        name: "UTF-8 cut after a whole character, truncated", bytes: Array("Code €".utf8), contentType: nil,
        truncated: true, expected: .init(text: "Code €")),
    TextCase(
        name: "UTF-16LE cut mid-unit, truncated",
        bytes: Array(([0xFF, 0xFE] + utf16("abc", bigEndian: false)).dropLast()),
        contentType: nil, truncated: true, expected: .init(text: "ab", charset: "utf-16le")),
    TextCase(
        name: "UTF-16LE cut mid-unit, not truncated",
        bytes: Array(([0xFF, 0xFE] + utf16("abc", bigEndian: false)).dropLast()),
        contentType: nil, expected: .init(text: nil, failure: "undecodable utf-16 text (odd length)")),
    TextCase(
        name: "UTF-16BE cut inside a surrogate pair, truncated",
        bytes: Array(([0xFE, 0xFF] + utf16("a🔑", bigEndian: true)).dropLast(2)), contentType: nil, truncated: true,
        expected: .init(text: "a", charset: "utf-16be")),
    TextCase(
        name: "UTF-16 unpaired surrogate", bytes: [0xFF, 0xFE, 0x61, 0x00, 0x00, 0xD8, 0x62, 0x00], contentType: nil,
        expected: .init(text: nil, failure: "undecodable utf-16 text (unpaired surrogate)")),
    TextCase(name: "empty", bytes: [], contentType: "application/json", expected: .init(text: "")),
    TextCase(name: "empty, truncated", bytes: [], contentType: nil, truncated: true, expected: .init(text: "")),
]

@Suite struct TextDecodingTests {
    @Test(arguments: textCases)
    func decodes(textCase: TextCase) {
        let decoded = TextDecoding.utf8(
            textCase.bytes, contentType: textCase.contentType, truncated: textCase.truncated)
        #expect(decoded == textCase.expected)
    }

    /// Cutting a multilingual body at every offset, flagged truncated, always yields a prefix of the text.
    @Test(arguments: [false, true])
    func everyCutOfUTF8AndUTF16IsAPrefix(utf16Body: Bool) {
        let text = "Jeton déjà utilisé – 🔑 €"
        let bytes = utf16Body ? [0xFF, 0xFE] + utf16(text, bigEndian: false) : Array(text.utf8)
        for cut in 0...bytes.count {
            let decoded = TextDecoding.utf8(Array(bytes[..<cut]), contentType: nil, truncated: true)
            let decodedText = decoded.text ?? "<nil: \(decoded.failure ?? "")>"
            #expect(text.hasPrefix(decodedText), "cut \(cut): \(decodedText)")
        }
    }

    @Test(
        arguments: [
            ("application/json; charset=utf-8", "utf-8"),
            (#"text/html;CHARSET="ISO-8859-1""#, "iso-8859-1"),
            ("text/plain; format=flowed; charset = Windows-1252 ", "windows-1252"),
            ("text/plain", nil),
            ("text/plain; charset=", nil),
            ("text/plain; charset=\"\"", nil),
            // Spring's MediaType.APPLICATION_JSON_UTF8_VALUE, as Spring Authorization Server sends it.
            ("application/json;charset=UTF-8", "utf-8"),
            ("text/html;\tcharset=\t\" utf-8 \"", "utf-8"),
            ("text/plain; charsets=utf-16; xcharset=utf-16", nil),
        ] as [(String, String?)])
    func declaredCharset(contentType: String, charset: String?) {
        #expect(TextDecoding.declaredCharset(contentType) == charset)
    }
}
