import AuthtapCodec
import AuthtapModel
import Foundation

/// Lexical JSON masking: no full parse, so it works on truncated or malformed JSON.
/// Every value under a secret key is masked at any depth (an object or array whole); readable strings are
/// looked at again (`maskReadable`, with the key they stand under); top-level members become params.
enum JSONMasking {
    static func mask(_ b: [UInt8], masker: Masker, location: ParamLocation, params: inout [OAuthParam]) -> [UInt8] {
        var run = Run(b: b, masker: masker, location: location)
        while run.i < b.count {
            let c = b[run.i]
            switch c {
            case UInt8(ascii: "\""):
                run.string()
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                run.open(c)
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = run.stack.popLast()
                run.pendingKey = nil
                run.expectingKey = false
                run.out.append(c)
                run.i += 1
            case UInt8(ascii: ","):
                run.expectingKey = run.stack.last?.bracket == UInt8(ascii: "{")
                run.pendingKey = nil
                run.out.append(c)
                run.i += 1
            case UInt8(ascii: ":"), 0x20, 0x0A, 0x0D, 0x09:
                run.out.append(c)
                run.i += 1
            default:
                run.literal()
            }
        }
        params += run.params
        return run.out
    }

    /// One pass over a JSON text: the output so far, where the lexer stands, and the keys in force.
    private struct Run {
        let b: [UInt8]
        let masker: Masker
        let location: ParamLocation
        var out: [UInt8] = []
        var params: [OAuthParam] = []
        var i = 0
        /// Each open container and the key it stands under (array elements inherit it: `x5c`, `scopes`).
        var stack: [(bracket: UInt8, key: String?)] = []
        var expectingKey = false
        var pendingKey: String? = nil
        let quote = UInt8(ascii: "\"")

        init(b: [UInt8], masker: Masker, location: ParamLocation) {
            self.b = b
            self.masker = masker
            self.location = location
            out.reserveCapacity(b.count + 64)
        }

        /// The key a value stands under: its member's, or for an array element the array's.
        var valueKey: String? {
            pendingKey ?? (stack.last?.bracket == UInt8(ascii: "[") ? stack.last?.key : nil)
        }

        /// A string at `i`: a member name, or a value masked under a secret key or looked at again.
        mutating func string() {
            let n = b.count
            var j = i + 1
            while j < n {
                if b[j] == UInt8(ascii: "\\") {
                    j += 2
                    continue
                }
                if b[j] == quote { break }
                j += 1
            }
            let closed = j < n
            let contentEnd = min(j, n)
            let raw = b[(i + 1)..<contentEnd]
            if stack.last?.bracket == UInt8(ascii: "{") && expectingKey {
                pendingKey = unescape(raw)
                expectingKey = false
                out.append(contentsOf: b[i..<(closed ? j + 1 : n)])
            } else {
                let key = valueKey
                let value = unescape(raw)
                if let key, Masker.isSecret(key) {
                    let (masked, param) = masker.secret(kind: key, value: value)
                    out.append(quote)
                    out.append(contentsOf: escape(masked))
                    if closed { out.append(quote) }
                    if stack.count == 1, pendingKey != nil {
                        params.append(OAuthParam(location: location, name: key, secret: param))
                    }
                } else {
                    let looked = masker.maskReadable(value, name: key)
                    if looked == value {
                        out.append(contentsOf: b[i..<(closed ? j + 1 : n)])
                    } else {
                        out.append(quote)
                        out.append(contentsOf: escape(looked))
                        if closed { out.append(quote) }
                    }
                    if stack.count == 1, let key = pendingKey {
                        params.append(OAuthParam(location: location, name: key, value: value))
                    }
                }
                pendingKey = nil
            }
            i = closed ? j + 1 : n
        }

        /// An object or array at `i`: masked whole under a secret key, else entered.
        mutating func open(_ c: UInt8) {
            if let key = pendingKey, Masker.isSecret(key) {
                // `{"password":{"value":"…"}}`: the whole container is the secret.
                let end = containerEnd(b, from: i)
                let text = String(decoding: b[i..<end], as: UTF8.self)
                let (masked, param) = masker.secret(kind: key, value: text)
                out.append(quote)
                out.append(contentsOf: escape(masked))
                out.append(quote)
                if stack.count == 1 { params.append(OAuthParam(location: location, name: key, secret: param)) }
                pendingKey = nil
                i = end
                return
            }
            if let key = pendingKey, stack.count == 1 {
                params.append(
                    OAuthParam(location: location, name: key, value: c == UInt8(ascii: "{") ? "{…}" : "[…]"))
            }
            stack.append((c, valueKey))
            expectingKey = c == UInt8(ascii: "{")
            pendingKey = nil
            out.append(c)
            i += 1
        }

        /// A literal at `i`: number, true, false, null.
        mutating func literal() {
            var j = i
            while j < b.count, !isDelimiter(b[j]) { j += 1 }
            if j == i { j = i + 1 }
            let literal = b[i..<j]
            let key = valueKey
            let text = String(decoding: literal, as: UTF8.self)
            // `null`, `true` and `false` say that there is no secret, or whether there is one.
            if let key, Masker.isSecret(key), text != "null", text != "true", text != "false" {
                let (masked, param) = masker.secret(kind: key, value: text)
                out.append(contentsOf: Array("\"\(masked)\"".utf8))
                if stack.count == 1, pendingKey != nil {
                    params.append(OAuthParam(location: location, name: key, secret: param))
                }
            } else {
                out.append(contentsOf: literal)
                if stack.count == 1, let key = pendingKey {
                    params.append(OAuthParam(location: location, name: key, value: text))
                }
            }
            pendingKey = nil
            i = j
        }
    }

    /// The index after the object or array that opens at `start` (strings skipped); the end of the
    /// input when it is cut before the container closes.
    static func containerEnd(_ b: [UInt8], from start: Int) -> Int {
        var depth = 0
        var i = start
        while i < b.count {
            switch b[i] {
            case UInt8(ascii: "\""):
                i += 1
                while i < b.count, b[i] != UInt8(ascii: "\"") {
                    if b[i] == UInt8(ascii: "\\") { i += 1 }
                    i += 1
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
                if depth == 0 { return i + 1 }
            default:
                break
            }
            i += 1
        }
        return b.count
    }

    private static func isDelimiter(_ c: UInt8) -> Bool {
        c == UInt8(ascii: ",") || c == UInt8(ascii: "}") || c == UInt8(ascii: "]") || c == UInt8(ascii: ":")
            || c == UInt8(ascii: "\"") || c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09
            || c == UInt8(ascii: "{") || c == UInt8(ascii: "[")
    }

    /// JSON string unescape; tolerant of truncation.
    static func unescape(_ raw: ArraySlice<UInt8>) -> String {
        guard raw.contains(UInt8(ascii: "\\")) else { return String(decoding: raw, as: UTF8.self) }
        let quoted = [UInt8(ascii: "\"")] + raw + [UInt8(ascii: "\"")]
        if let s = try? JSONDecoder().decode(String.self, from: Data(quoted)) { return s }
        return String(decoding: raw, as: UTF8.self)
    }

    static func escape(_ text: String) -> [UInt8] {
        var text = text
        if let plain = text.withUTF8({ bytes -> [UInt8]? in
            bytes.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") })
                ? nil : Array(bytes)
        }) {
            return plain
        }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 8)
        let hex = Array("0123456789abcdef".utf8)
        for c in text.utf8 {
            if c < 0x20 {
                out += Array("\\u00".utf8) + [hex[Int(c >> 4)], hex[Int(c & 0xF)]]
                continue
            }
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
            out.append(c)
        }
        return out
    }
}
