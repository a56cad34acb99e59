/// Makes text that a server, a client or a file chose safe to print on a terminal.
///
/// A terminal obeys what it is sent: ESC starts CSI and OSC sequences that recolour, move the cursor, rewrite the
/// window title or plant OSC 8 hyperlinks; C1 controls (U+0080–U+009F) do the same on terminals that honour them;
/// CR and BS overwrite what was printed; bidi overrides (U+202A–U+202E, U+2066–U+2069) reorder text so that what
/// is shown is not what was sent. Every such character is printed as a visible escape instead:
///
/// | input                         | printed          |
/// |-------------------------------|------------------|
/// | C0 control, DEL               | `\x1b`, `\x7f`   |
/// | LF, CR, TAB                   | `\n`, `\r`, `\t` |
/// | C1 control, bidi, separators  | `\u{9b}`, `\u{202e}` |
/// | a byte that is not UTF-8      | `\xff` (from `escape(bytes:)`) |
///
/// A backslash is doubled whenever what follows it could be read as one of these escapes, so two different
/// inputs never print alike (`\x1b` typed literally prints `\\x1b`), while an ordinary backslash, as in
/// `C:\Users`, prints as it is.
public enum TerminalText {
    /// Escapes every control character. `newlines: true` keeps LF as a line break, for multi-line text
    /// whose line structure is the output's own (a report's prose); a CR is still escaped.
    public static func escape(_ text: String, newlines: Bool = false) -> String {
        guard needsWork(text.utf8, newlines: newlines) else { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 16)
        let scalars = Array(text.unicodeScalars)
        for i in scalars.indices {
            append(scalars[i], next: i + 1 < scalars.count ? scalars[i + 1] : nil, newlines: newlines, to: &out)
        }
        return out
    }

    /// Escapes raw bytes: valid UTF-8 is treated as `escape(_:)` does, and every byte that is not part of a valid
    /// UTF-8 sequence (including a lone 0x80–0x9F, which some terminals read as C1) prints as `\xHH`.
    public static func escape(bytes: [UInt8], newlines: Bool = false) -> String {
        var out = ""
        var i = 0
        // Each item is a decoded scalar or one byte that did not decode.
        var pendingBackslash = false
        func flushBackslash(beforeEscape: Bool) {
            guard pendingBackslash else { return }
            out += beforeEscape ? "\\\\" : "\\"
            pendingBackslash = false
        }
        while i < bytes.count {
            if let (scalar, length) = decodeScalar(bytes, at: i) {
                if pendingBackslash {
                    flushBackslash(beforeEscape: startsEscape(scalar, newlines: newlines))
                }
                if scalar == "\\" {
                    pendingBackslash = true
                } else {
                    append(scalar, next: nil, newlines: newlines, to: &out)
                }
                i += length
            } else {
                flushBackslash(beforeEscape: true)
                out += hex(bytes[i], prefix: "\\x", digits: 2)
                i += 1
            }
        }
        flushBackslash(beforeEscape: false)
        return out
    }

    /// Encoded JSON made safe to print: JSON encoders escape C0 controls but pass DEL, C1 controls and bidi
    /// characters through raw. Those only occur inside strings, where `\uXXXX` means the same character, so the
    /// document still decodes to the same value.
    public static func escapeJSON(_ json: String) -> String {
        guard json.unicodeScalars.contains(where: { isControl($0) && $0.value >= 0x7F }) else { return json }
        var out = ""
        out.reserveCapacity(json.utf8.count + 16)
        for s in json.unicodeScalars {
            if s.value >= 0x7F && isControl(s) {
                out += hex(s.value, prefix: "\\u", digits: 4)
            } else {
                out.unicodeScalars.append(s)
            }
        }
        return out
    }

    /// Whether the text holds a character that must not reach a terminal as it is.
    public static func containsControl(_ text: String) -> Bool {
        needsWork(text.utf8, newlines: false) && text.unicodeScalars.contains { isControl($0) }
    }

    /// Escapes the text only when it holds a control character. Text escaped already holds none and comes back
    /// as it is, so this is safe to apply twice, as a last guard where text is drawn.
    public static func escapeIfControls(_ text: String) -> String {
        containsControl(text) ? escape(text) : text
    }

    /// Whether the character must not reach a terminal as it is.
    public static func isControl(_ scalar: Unicode.Scalar, newlines: Bool = false) -> Bool {
        let v = scalar.value
        if v == 0x0A { return !newlines }
        return v < 0x20 || (0x7F...0x9F).contains(v) || isInvisibleFormatting(v)
    }

    /// Bidi embeddings, overrides and isolates, and the line and paragraph separators.
    static func isInvisibleFormatting(_ v: UInt32) -> Bool {
        (0x202A...0x202E).contains(v) || (0x2066...0x2069).contains(v) || v == 0x2028 || v == 0x2029
    }

    // MARK: pieces

    private static func append(_ s: Unicode.Scalar, next: Unicode.Scalar?, newlines: Bool, to out: inout String) {
        if s == "\\" {
            out += (next.map { startsEscape($0, newlines: newlines) } ?? false) ? "\\\\" : "\\"
            return
        }
        guard isControl(s, newlines: newlines) else {
            out.unicodeScalars.append(s)
            return
        }
        switch s.value {
        case 0x0A: out += "\\n"
        case 0x0D: out += "\\r"
        case 0x09: out += "\\t"
        case 0..<0x80: out += hex(s.value, prefix: "\\x", digits: 2)
        default: out += "\\u{" + hex(s.value, prefix: "", digits: 2) + "}"
        }
    }

    /// A backslash before this character would be read as the start of an escape.
    private static func startsEscape(_ s: Unicode.Scalar, newlines: Bool) -> Bool {
        s == "\\" || s == "x" || s == "u" || s == "n" || s == "r" || s == "t" || isControl(s, newlines: newlines)
    }

    private static func hex<T: BinaryInteger>(_ v: T, prefix: String, digits: Int) -> String {
        let h = String(v, radix: 16)
        return prefix + String(repeating: "0", count: max(0, digits - h.count)) + h
    }

    /// A fast scan: most text has nothing to escape and is returned as it is.
    private static func needsWork(_ utf8: String.UTF8View, newlines: Bool) -> Bool {
        for b in utf8 {
            switch b {
            case 0x0A: if !newlines { return true }
            // 0xC2 leads U+0080–U+00BF (C1 among them), 0xE2 leads U+2000–U+2FFF (bidi, separators).
            case 0..<0x20, 0x7F, 0x5C, 0xC2, 0xE2: return true
            default: continue
            }
        }
        return false
    }

    /// Decodes one well-formed UTF-8 scalar at `i` (no overlongs, surrogates or values past U+10FFFF).
    private static func decodeScalar(_ b: [UInt8], at i: Int) -> (Unicode.Scalar, Int)? {
        let lead = b[i]
        if lead < 0x80 { return (Unicode.Scalar(lead), 1) }
        let length: Int
        let initial: UInt32
        let lowest: UInt32
        switch lead {
        case 0xC2...0xDF: (length, initial, lowest) = (2, UInt32(truncatingIfNeeded: lead & 0x1F), 0x80)
        case 0xE0...0xEF: (length, initial, lowest) = (3, UInt32(truncatingIfNeeded: lead & 0x0F), 0x800)
        case 0xF0...0xF4: (length, initial, lowest) = (4, UInt32(truncatingIfNeeded: lead & 0x07), 0x10000)
        default: return nil
        }
        guard b.count - i >= length else { return nil }
        var v = initial
        for k in 1..<length {
            let c = b[i + k]
            guard c & 0xC0 == 0x80 else { return nil }
            v = v << 6 | UInt32(truncatingIfNeeded: c & 0x3F)
        }
        guard v >= lowest, let scalar = Unicode.Scalar(v) else { return nil }
        return (scalar, length)
    }
}

extension String {
    /// This text, safe to print on a terminal: see `TerminalText`.
    public var terminalSafe: String { TerminalText.escape(self) }
}
