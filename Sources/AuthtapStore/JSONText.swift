import AuthtapModel
import Foundation

/// Compact JSON for header lists and TLS facts.
enum JSONText {
    static func headers(_ headers: [HeaderField]) -> String {
        var out: [UInt8] = []
        appendHeaders(headers, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `[["name","value"],…]` appended to `out`.
    static func appendHeaders(_ headers: [HeaderField], to out: inout [UInt8]) {
        appendRows(headers, to: &out) { h, field in
            field(h.name)
            field(h.value)
        }
    }

    /// A JSON array of string arrays, one per row, with the strings `fields` gives for it.
    static func appendRows<Row>(_ rows: [Row], to out: inout [UInt8], fields: (Row, (String) -> Void) -> Void) {
        var bound = 2  // `[` `]`, then per row `[` `]` `,` and per string its worst case and a `,`
        for row in rows {
            bound += 3
            fields(row) { bound += Writer.quotedBound($0) + 1 }
        }
        Writer.append(to: &out, bound: bound) { w in
            w.byte(UInt8(ascii: "["))
            for (i, row) in rows.enumerated() {
                if i > 0 { w.byte(UInt8(ascii: ",")) }
                w.byte(UInt8(ascii: "["))
                var first = true
                fields(row) { text in
                    if !first { w.byte(UInt8(ascii: ",")) }
                    first = false
                    w.quoted(text)
                }
                w.byte(UInt8(ascii: "]"))
            }
            w.byte(UInt8(ascii: "]"))
        }
    }

    /// `[["location","name","value"(,"fingerprint")],…]`, the shape the `oauth_param` view reads.
    /// Arrays, not objects: member names would repeat in every entry of what is the largest column of
    /// a row, and every byte of it is inserted, logged and checkpointed.
    static func params(_ params: [OAuthParam]) -> String {
        var out: [UInt8] = []
        appendParams(params, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func appendParams(_ params: [OAuthParam], to out: inout [UInt8]) {
        appendRows(params, to: &out) { p, field in
            field(p.location.rawValue)
            field(p.name)
            field(p.value)
            if let fp = p.fingerprint { field(fp) }
        }
    }

    /// A JSON string literal appended to `out`.
    static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        Writer.append(to: &out, bound: Writer.quotedBound(s)) { $0.quoted(s) }
    }

    /// Writes JSON text into a buffer sized for the worst case up front, then appends it once.
    /// Appending byte by byte to an array paid a uniqueness and capacity check per byte and a
    /// generic copy per string: writing the headers and params columns took about as many
    /// instructions as SQLite's whole insert of the row.
    struct Writer {
        private let base: UnsafeMutablePointer<UInt8>
        private let capacity: Int
        private(set) var count = 0

        /// Room for `s` quoted in the worst case (every byte a `\u00XX` escape).
        static func quotedBound(_ s: String) -> Int { 2 + 6 * s.utf8.count }

        /// Appends to `out` what `body` writes; `body` must stay within `bound` bytes (checked per write).
        static func append(to out: inout [UInt8], bound: Int, _ body: (inout Writer) -> Void) {
            let bytes = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
                var writer = Writer(base: buffer.baseAddress!, capacity: buffer.count)
                body(&writer)
                initialized = writer.count
            }
            out.append(contentsOf: bytes)
        }

        private init(base: UnsafeMutablePointer<UInt8>, capacity: Int) {
            self.base = base
            self.capacity = capacity
        }

        mutating func byte(_ b: UInt8) {
            precondition(count < capacity)
            base[count] = b
            count += 1
        }

        mutating func quoted(_ s: String) {
            var s = s
            s.withUTF8 { quoted(bytes: $0) }
        }

        /// Runs of plain bytes are copied whole; `"`, `\\` and control bytes are escaped.
        mutating func quoted(bytes b: UnsafeBufferPointer<UInt8>) {
            precondition(count + 2 + 6 * b.count <= capacity)
            base[count] = UInt8(ascii: "\"")
            count += 1
            var run = 0
            var i = Self.plainPrefix(b, from: 0)
            while i < b.count {
                let c = b[i]
                guard Self.needsEscape(c) else {
                    i = Self.plainPrefix(b, from: i + 1)
                    continue
                }
                copy(b, run..<i)
                run = i + 1
                i += 1
                base[count] = UInt8(ascii: "\\")
                switch c {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): base[count + 1] = c; count += 2
                case 0x0A: base[count + 1] = UInt8(ascii: "n"); count += 2
                case 0x0D: base[count + 1] = UInt8(ascii: "r"); count += 2
                case 0x09: base[count + 1] = UInt8(ascii: "t"); count += 2
                default:
                    base[count + 1] = UInt8(ascii: "u")
                    base[count + 2] = UInt8(ascii: "0")
                    base[count + 3] = UInt8(ascii: "0")
                    base[count + 4] = JSONText.hexDigit(c >> 4)
                    base[count + 5] = JSONText.hexDigit(c & 0xF)
                    count += 6
                }
            }
            copy(b, run..<b.count)
            base[count] = UInt8(ascii: "\"")
            count += 1
        }

        static func needsEscape(_ c: UInt8) -> Bool { c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") }

        /// Skips whole 8-byte words in which no byte needs an escape (nearly all of them), and returns
        /// where the first word that may hold one starts; the caller looks at that word byte by byte.
        static func plainPrefix(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
            guard let base = b.baseAddress else { return start }
            let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
            var i = start
            while i + 8 <= b.count {
                let x = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
                // A byte below 0x20, or equal to `"` or `\\` (a zero byte after the XOR): exact tests for "any".
                let control = (x &- 0x20 &* ones) & ~x & highs
                let q = x ^ (0x22 &* ones), s = x ^ (0x5C &* ones)
                let special = control | ((q &- ones) & ~q & highs) | ((s &- ones) & ~s & highs)
                if special != 0 { return i }
                i += 8
            }
            return i
        }

        private mutating func copy(_ b: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) {
            guard !range.isEmpty, let source = b.baseAddress else { return }
            (base + count).update(from: source + range.lowerBound, count: range.count)
            count += range.count
        }
    }

    static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? UInt8(ascii: "0") + v : UInt8(ascii: "a") + v - 10 }

    /// `[["name","value"],…]` as `headers(_:)` writes it, read by a token scanner: large loads
    /// (the analyzer, the TUI) read every row, and a general JSON parse dominated their time.
    static func decodeHeaders(_ text: String) -> [HeaderField] {
        var result: [HeaderField] = []
        var pending: String? = nil
        scanStrings(text) { s, _ in
            if let name = pending {
                result.append(HeaderField(name, s))
                pending = nil
            } else {
                pending = s
            }
        }
        return result
    }

    /// The params column as `params(_:)` writes it, `[["location","name","value","fingerprint"?],…]`,
    /// or as capture files written before v5 hold it, `[{"location":…,"name":…,"value":…,"fingerprint":…},…]`.
    static func decodeParams(_ text: String?) -> [OAuthParam] {
        guard let text else { return [] }
        var result: [OAuthParam] = []
        let arrays =
            text.utf8.dropFirst().first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 })
            == UInt8(ascii: "[")
        if arrays {
            var fields: [String] = []
            scanStrings(text) { s, endOfContainer in
                fields.append(s)
                if endOfContainer {
                    if fields.count >= 3 {
                        result.append(
                            OAuthParam(
                                location: ParamLocation(rawValue: fields[0]), name: fields[1], value: fields[2],
                                fingerprint: fields.count > 3 ? fields[3] : nil))
                    }
                    fields.removeAll(keepingCapacity: true)
                }
            }
            return result
        }
        var key: String? = nil
        var fields: [String: String] = [:]
        scanStrings(text) { s, endOfObject in
            if let k = key {
                fields[k] = s
                key = nil
            } else {
                key = s
            }
            if endOfObject {
                if let location = fields["location"], let name = fields["name"], let value = fields["value"] {
                    result.append(
                        OAuthParam(
                            location: ParamLocation(rawValue: location), name: name, value: value,
                            fingerprint: fields["fingerprint"]))
                }
                fields.removeAll(keepingCapacity: true)
                key = nil
            }
        }
        return result
    }

    /// Calls `emit` with every JSON string literal in order; the flag is true for the last string
    /// before a `}` or `]` (the end of the object or array that holds it).
    private static func scanStrings(_ text: String, _ emit: (String, Bool) -> Void) {
        var text = text
        text.withUTF8 { b in
            var i = 0
            var last: String? = nil
            while i < b.count {
                let c = b[i]
                if c == UInt8(ascii: "\"") {
                    var j = i + 1
                    var escaped = false
                    while j < b.count, b[j] != UInt8(ascii: "\"") {
                        if b[j] == UInt8(ascii: "\\") { escaped = true; j += 1 }
                        j += 1
                    }
                    let end = min(j, b.count)
                    let s: String
                    if escaped {
                        let quoted = Array(b[i...min(j, b.count - 1)])
                        s =
                            (try? JSONDecoder().decode(String.self, from: Data(quoted)))
                            ?? String(decoding: b[(i + 1)..<end], as: UTF8.self)
                    } else {
                        s = String(decoding: UnsafeBufferPointer(rebasing: b[(i + 1)..<end]), as: UTF8.self)
                    }
                    if let previous = last { emit(previous, false) }
                    last = s
                    i = j + 1
                    continue
                }
                if c == UInt8(ascii: "}") || c == UInt8(ascii: "]"), let previous = last {
                    emit(previous, true)
                    last = nil
                }
                i += 1
            }
            if let previous = last { emit(previous, false) }
        }
    }

    static func encode<T: Encodable>(_ value: T?) -> String? {
        guard let value else { return nil }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) }
    }

    static func decode<T: Decodable>(_ text: String?) -> T? {
        guard let text else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try? decoder.decode(T.self, from: Data(text.utf8))
    }
}
