import AuthtapModel
import Foundation
import Testing

@testable import AuthtapTUI

// MARK: TerminalText

struct EscapeCase: Sendable, CustomStringConvertible {
    var input: String
    var expected: String
    var description: String { expected }
}

let escapeCases: [EscapeCase] = [
    .init(input: "plain text, ünïcödé, 日本", expected: "plain text, ünïcödé, 日本"),
    .init(input: "\u{1B}[31mred\u{1B}[0m", expected: #"\x1b[31mred\x1b[0m"#),
    // OSC 8 hyperlink with ST and with BEL terminators.
    .init(
        input: "\u{1B}]8;;https://evil.example\u{1B}\\click\u{1B}]8;;\u{1B}\\",
        expected: #"\x1b]8;;https://evil.example\x1b\click\x1b]8;;\x1b\"#),
    .init(input: "\u{1B}]0;title\u{07}", expected: #"\x1b]0;title\x07"#),
    .init(input: "a\u{9B}31mb\u{9D}0;t\u{9C}", expected: #"a\u{9b}31mb\u{9d}0;t\u{9c}"#),
    .init(input: "line1\nline2\r\tend\u{7F}\u{00}", expected: #"line1\nline2\r\tend\x7f\x00"#),
    .init(
        input: "user\u{202E}gpj.exe\u{202C} \u{2066}x\u{2069}",
        expected: #"user\u{202e}gpj.exe\u{202c} \u{2066}x\u{2069}"#),
    .init(input: "a\u{2028}b", expected: #"a\u{2028}b"#),
    // A backslash stays single unless what follows could read as an escape.
    .init(input: #"C:\Users\me"#, expected: #"C:\Users\me"#),
    .init(input: #"literal \x1b"#, expected: #"literal \\x1b"#),
    .init(input: #"two \\ backslashes"#, expected: #"two \\\ backslashes"#),
    .init(input: "slash before ESC \\\u{1B}", expected: #"slash before ESC \\\x1b"#),
    .init(input: #"ends with \"#, expected: #"ends with \"#),
]

@Test(arguments: escapeCases)
func escapesControlCharacters(_ c: EscapeCase) {
    #expect(TerminalText.escape(c.input) == c.expected)
    // Nothing a terminal acts on survives.
    #expect(!TerminalText.escape(c.input).unicodeScalars.contains { TerminalText.isControl($0) })
}

/// Reads an escaped string back: the escaping is a bijection, so no two inputs print alike.
func unescape(_ s: String) -> String {
    var out = String.UnicodeScalarView()
    let a = Array(s.unicodeScalars)
    var i = 0
    while i < a.count {
        guard a[i] == "\\", i + 1 < a.count else { out.append(a[i]); i += 1; continue }
        switch a[i + 1] {
        case "\\": out.append("\\"); i += 2
        case "n": out.append("\n"); i += 2
        case "r": out.append("\r"); i += 2
        case "t": out.append("\t"); i += 2
        case "x":
            let v = UInt32(String(String.UnicodeScalarView(a[(i + 2)..<(i + 4)])), radix: 16) ?? 0
            out.append(Unicode.Scalar(v) ?? "?"); i += 4
        case "u":
            guard let close = a[(i + 3)...].firstIndex(of: "}") else { out.append(a[i]); i += 1; continue }
            let v = UInt32(String(String.UnicodeScalarView(a[(i + 3)..<close])), radix: 16) ?? 0
            out.append(Unicode.Scalar(v) ?? "?"); i = close + 1
        default: out.append(a[i]); i += 1
        }
    }
    return String(out)
}

@Test func escapingRoundTripsSoTwoInputsNeverPrintAlike() {
    let alphabet: [Unicode.Scalar] = [
        "\\", "x", "u", "n", "1", "b", "{", "}", "\u{1B}", "\n", "\u{9B}", "\u{202E}", "a",
    ]
    var generator = SystemRandomNumberGenerator()
    var seen: [String: String] = [:]
    for _ in 0..<5000 {
        var view = String.UnicodeScalarView()
        for _ in 0..<Int.random(in: 0...6, using: &generator) {
            view.append(alphabet.randomElement(using: &generator) ?? "a")
        }
        let input = String(view)
        let escaped = TerminalText.escape(input)
        #expect(unescape(escaped) == input, "\(escaped)")
        if let other = seen[escaped] { #expect(other == input) }
        seen[escaped] = input
    }
}

@Test func newlinesCanBeKeptForMultiLineText() {
    #expect(TerminalText.escape("a\nb\r\u{1B}", newlines: true) == "a\nb\\r\\x1b")
}

@Test func rawBytesEscapeInvalidUTF8AndC1() {
    // 0x9B alone is not UTF-8: some terminals read it as CSI.
    #expect(TerminalText.escape(bytes: [0x41, 0x9B, 0x33, 0x31, 0x6D]) == #"A\x9b31m"#)
    #expect(TerminalText.escape(bytes: Array("ok \u{9B} é".utf8)) == #"ok \u{9b} é"#)
    #expect(TerminalText.escape(bytes: [0x1B, 0x5B, 0xC0, 0xAF, 0xED, 0xA0, 0x80]) == #"\x1b[\xc0\xaf\xed\xa0\x80"#)
    #expect(TerminalText.escape(bytes: Array(#"\x41"#.utf8) + [0xFF]) == #"\\x41\xff"#)
    #expect(TerminalText.escape(bytes: [0x5C, 0xFF]) == #"\\\xff"#)
}

@Test func jsonKeepsItsValueAndLosesRawC1AndBidi() throws {
    let value = ["k": "a\u{9B}b\u{202E}c\u{7F}"]
    let encoded = String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
    let safe = TerminalText.escapeJSON(encoded)
    #expect(!safe.unicodeScalars.contains { TerminalText.isControl($0) })
    #expect(try JSONDecoder().decode([String: String].self, from: Data(safe.utf8)) == value)
}

@Test func escapeIfControlsLeavesEscapedTextAlone() {
    let once = TerminalText.escape("\u{1B}[2J \\x")
    #expect(TerminalText.escapeIfControls(once) == once)
}

// MARK: the TUI's screen never holds a control character

@Test func screenBufferDrawsControlsAsVisibleEscapes() {
    var buf = ScreenBuffer(rows: 2, cols: 60)
    buf.put(0, 0, "x\u{1B}]8;;https://e.example\u{07}y\u{9B}z\u{202E}w")
    #expect(buf.line(0) == #"x\x1b]8;;https://e.example\x07y\u{9b}z\u{202e}w"#)
    #expect(!buf.cells.contains { $0.text.unicodeScalars.contains { TerminalText.isControl($0) } })
    #expect(fit("a\u{1B}b", 8) == #"a\x1bb  "#)
}
