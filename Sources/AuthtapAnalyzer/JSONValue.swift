import Foundation

/// A parsed JSON value. The analyzer parses bodies itself so that a malformed body
/// reports the byte offset where parsing stopped, and numbers stay apart from strings.
public indirect enum JSONValue: Sendable, Equatable {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members.first { $0.0 == key }?.1 }
        return nil
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var number: Double? { if case .number(let n) = self { return n }; return nil }
    public var isObject: Bool { if case .object = self { return true }; return false }
    /// A scalar as text (numbers without a trailing `.0`), for evidence.
    public var text: String {
        switch self {
        case .string(let s): return s
        case .number(let n): return abs(n) < 1e15 ? Int64(exactly: n).map { String($0) } ?? String(n) : String(n)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .array: return "[…]"
        case .object: return "{…}"
        }
    }

    /// Why a body is not JSON: the byte offset (0-based), and what was expected there.
    public struct ParseError: Error, Sendable, Equatable {
        public var offset: Int
        public var message: String
        /// `true` when the input ended before the value was complete.
        public var endOfInput: Bool
    }

    public static func parse(_ bytes: [UInt8]) -> Result<JSONValue, ParseError> {
        var p = Parser(b: bytes)
        do {
            p.skipSpace()
            let v = try p.value(depth: 0)
            p.skipSpace()
            if p.i < bytes.count {
                throw ParseError(offset: p.i, message: "unexpected data after the JSON value", endOfInput: false)
            }
            return .success(v)
        } catch let e as ParseError {
            return .failure(e)
        } catch {
            return .failure(ParseError(offset: p.i, message: "\(error)", endOfInput: false))
        }
    }

    private struct Parser {
        let b: [UInt8]
        var i = 0

        mutating func skipSpace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }
        func fail(_ message: String) -> ParseError {
            ParseError(
                offset: i, message: i >= b.count ? "unexpected end of input (\(message))" : message,
                endOfInput: i >= b.count)
        }
        mutating func value(depth: Int) throws -> JSONValue {
            guard depth < 512 else { throw fail("nesting too deep") }
            guard i < b.count else { throw fail("expected a value") }
            switch b[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(String, JSONValue)] = []
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                while true {
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a member name") }
                    let key = try string()
                    skipSpace()
                    guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1
                    skipSpace()
                    members.append((key, try value(depth: depth + 1)))
                    skipSpace()
                    guard i < b.count else { throw fail("expected ',' or '}'") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [JSONValue] = []
                skipSpace()
                if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    skipSpace()
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    guard i < b.count else { throw fail("expected ',' or ']'") }
                    if b[i] == UInt8(ascii: ",") { i += 1; continue }
                    if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                let start = i
                if b[i] == UInt8(ascii: "-") { i += 1 }
                var digits = 0
                while i < b.count,
                    (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) || b[i] == UInt8(ascii: ".")
                        || b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") || b[i] == UInt8(ascii: "+")
                        || (b[i] == UInt8(ascii: "-") && i > start)
                {
                    i += 1
                    digits += 1
                }
                guard digits > 0, let n = Double(String(decoding: b[start..<i], as: UTF8.self)) else {
                    i = start
                    throw fail("invalid number")
                }
                return .number(n)
            default:
                throw fail("unexpected character '\(Character(Unicode.Scalar(b[i])))'")
            }
        }
        mutating func literal(_ word: String) throws {
            for c in word.utf8 {
                guard i < b.count, b[i] == c else { throw fail("invalid literal, expected \(word)") }
                i += 1
            }
        }
        mutating func string() throws -> String {
            i += 1
            var out: [UInt8] = []
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") { i += 1; return String(decoding: out, as: UTF8.self) }
                if c == UInt8(ascii: "\\") {
                    i += 1
                    guard i < b.count else { break }
                    switch b[i] {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "u"):
                        guard i + 4 < b.count,
                            let code = UInt32(String(decoding: b[(i + 1)...(i + 4)], as: UTF8.self), radix: 16)
                        else {
                            throw fail("invalid \\u escape")
                        }
                        out.append(contentsOf: Array(String(Character(Unicode.Scalar(code) ?? "\u{FFFD}")).utf8))
                        i += 4
                    default: out.append(b[i])
                    }
                    i += 1
                    continue
                }
                if c < 0x20 { throw fail("control character in a string") }
                out.append(c)
                i += 1
            }
            throw fail("unterminated string")
        }
    }
}
