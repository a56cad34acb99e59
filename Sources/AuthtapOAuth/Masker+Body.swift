import AuthtapModel
import Foundation

extension Masker {
    /// Masks a captured body prefix. Works on truncated bodies too: JSON is masked lexically,
    /// so an unterminated string at the cut is still masked. Bodies with a `Content-Encoding`
    /// other than identity are not kept (their size is), since their secrets cannot be found.
    public func maskBody(
        _ bytes: [UInt8], headers: [HeaderField], location: String, params: inout [OAuthParam]
    ) -> [UInt8] {
        if bytes.isEmpty { return ([]) }
        if let encoding = headers.value(of: "content-encoding")?.lowercased(), encoding != "identity", !encoding.isEmpty {
            return (Array("[authtap: \(encoding)-encoded body not recorded]".utf8))
        }
        // Matched without a lower-cased copy of the value (this runs for every body).
        let contentType = headers.value(of: "content-type") ?? ""
        let isJSONType = contentType.utf8ContainsASCIICaseInsensitive("json")
        let isFormType = contentType.utf8ContainsASCIICaseInsensitive("x-www-form-urlencoded")
        guard let text = String(validating: bytes, as: UTF8.self) else {
            // Not UTF-8: only keep it if it cannot be text carrying a secret.
            if contentType.lowercased().hasPrefix("text/") || isJSONType || contentType.utf8ContainsASCIICaseInsensitive("form") {
                return (Array("[authtap: body is not valid UTF-8, not recorded]".utf8))
            }
            return (bytes)
        }
        let firstSignificant = text.utf8.first { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        if isJSONType || firstSignificant == UInt8(ascii: "{") || firstSignificant == UInt8(ascii: "[") {
            return (JSONMasking.mask(bytes, masker: self, location: location, params: &params))
        }
        if isFormType || FormCoding.looksLikeForm(text) {
            return (Array(maskPairs(Substring(text), location: location, params: &params).utf8))
        }
        return (Array(maskFreeText(text).utf8))
    }

    /// Masks secrets in text that is neither JSON nor a form: `name=value`, `"name": "value"`
    /// and HTML inputs (`<input name="code" value="...">`, either attribute order).
    /// One pass over the bytes; candidate positions are where a secret name starts.
    public func maskFreeText(_ text: String) -> String {
        let b = Array(text.utf8)
        var spans: [(start: Int, end: Int, name: String)] = []
        var i = 0
        while i < b.count {
            guard Self.isNameStart(b[i]), i == 0 || !Self.isNameByte(b[i - 1]), let name = Self.secretName(at: i, in: b) else {
                i += 1
                continue
            }
            let j = i + name.utf8.count
            if let span = Self.valueSpan(after: j, nameStart: i, in: b) {
                spans.append((span.lowerBound, span.upperBound, name))
                i = max(j, span.upperBound)
            } else {
                i = j
            }
        }
        if spans.isEmpty { return text }
        var out: [UInt8] = []
        out.reserveCapacity(b.count + spans.count * 48)
        var cursor = 0
        for span in spans.sorted(by: { $0.start < $1.start }) where span.start >= cursor {
            out.append(contentsOf: b[cursor..<span.start])
            let value = String(decoding: b[span.start..<span.end], as: UTF8.self)
            out.append(contentsOf: Array(mask(kind: span.name, value: value).utf8))
            cursor = span.end
        }
        out.append(contentsOf: b[cursor...])
        return String(decoding: out, as: UTF8.self)
    }

    static let secretNameBytes: [(String, [UInt8])] = secretNames.sorted { $0.count > $1.count }.map { ($0, Array($0.utf8)) }

    static func isNameByte(_ c: UInt8) -> Bool {
        (c >= 0x61 && c <= 0x7A) || (c >= 0x41 && c <= 0x5A) || (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "_")
    }
    static func isNameStart(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }

    /// The longest secret name starting at `i` (ASCII case-insensitive) and not running on.
    static func secretName(at i: Int, in b: [UInt8]) -> String? {
        for (name, bytes) in secretNameBytes where i + bytes.count <= b.count {
            var k = 0
            while k < bytes.count, b[i + k] | 0x20 == bytes[k] | 0x20 || (bytes[k] == UInt8(ascii: "_") && b[i + k] == bytes[k]) { k += 1 }
            if k == bytes.count, i + k == b.count || !isNameByte(b[i + k]) { return name }
        }
        return nil
    }

    /// Where the value of the name ending at `j` lies, for the three shapes; `nil` if none.
    static func valueSpan(after j: Int, nameStart i: Int, in b: [UInt8]) -> Range<Int>? {
        let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'")
        func skipSpaces(_ k: Int) -> Int {
            var k = k
            while k < b.count, b[k] == 0x20 || b[k] == 0x09 || b[k] == 0x0A || b[k] == 0x0D { k += 1 }
            return k
        }
        func quoted(from k: Int) -> Range<Int>? {
            guard k < b.count, b[k] == quote || b[k] == apostrophe else { return nil }
            let q = b[k]
            var e = k + 1
            while e < b.count, b[e] != q {
                if b[e] == UInt8(ascii: "\\") { e += 1 }
                e += 1
            }
            return (k + 1)..<min(e, b.count)
        }
        func nonEmpty(_ r: Range<Int>?) -> Range<Int>? {
            guard let r, !r.isEmpty else { return nil }
            return b[r].starts(with: Array("[masked".utf8)) ? nil : r
        }
        // HTML attribute: name="code" ... value="..." (or value before name) inside one tag.
        if i >= 6, j < b.count, b[j] == quote || b[j] == apostrophe, b[i - 1] == b[j], b[i - 2] == UInt8(ascii: "=") {
            let attr = Array("name".utf8)
            if b[(i - 6)..<(i - 2)].map({ $0 | 0x20 }).elementsEqual(attr) {
                let tagStart = b[..<i].lastIndex(of: UInt8(ascii: "<")) ?? 0
                let tagEnd = b[j...].firstIndex(of: UInt8(ascii: ">")) ?? b.count
                let valueAttr = Array("value=".utf8)
                var k = tagStart
                while k + valueAttr.count < tagEnd {
                    if b[k..<(k + valueAttr.count)].map({ $0 | 0x20 }).elementsEqual(valueAttr), k == 0 || !isNameByte(b[k - 1]) {
                        return nonEmpty(quoted(from: k + valueAttr.count))
                    }
                    k += 1
                }
                return nil
            }
        }
        // JSON-like: "name" : "value"
        if i >= 1, b[i - 1] == quote, j < b.count, b[j] == quote {
            var k = skipSpaces(j + 1)
            guard k < b.count, b[k] == UInt8(ascii: ":") else { return nil }
            k = skipSpaces(k + 1)
            return nonEmpty(quoted(from: k))
        }
        // name=value
        if j < b.count, b[j] == UInt8(ascii: "=") {
            var e = j + 1
            while e < b.count, !Self.valueDelimiters.contains(b[e]) { e += 1 }
            return nonEmpty((j + 1)..<e)
        }
        return nil
    }

    static let valueDelimiters: Set<UInt8> = Set("&;,\"'<> \t\r\n".utf8)
}

extension FormCoding {
    /// `a=b&c=d` with no whitespace: a form body sent without a Content-Type.
    public static func looksLikeForm(_ text: String) -> Bool {
        guard text.utf8.contains(UInt8(ascii: "=")), text.utf8.count < 1 << 20 else { return false }
        return !text.utf8.contains { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 || $0 == UInt8(ascii: "<") }
    }
}

extension String {
    /// Substring search on UTF-8 bytes: no Foundation bridging, no copy (Foundation's
    /// `contains` goes through NSString, and it runs on the writer's path for every exchange).
    func utf8Contains(_ needle: String) -> Bool {
        var hay = self, needle = needle
        return hay.withUTF8 { h in
            needle.withUTF8 { n in
                guard !n.isEmpty else { return true }
                guard h.count >= n.count, let hb = h.baseAddress, let nb = n.baseAddress else { return false }
                let first = n[0]
                for start in 0...(h.count - n.count) where h[start] == first {
                    if memcmp(hb + start, nb, n.count) == 0 { return true }
                }
                return false
            }
        }
    }

    /// `utf8Contains` ignoring ASCII case; `needle` must be lower case.
    func utf8ContainsASCIICaseInsensitive(_ needle: StaticString) -> Bool {
        var hay = self
        return hay.withUTF8 { h in
            let n = UnsafeBufferPointer(start: needle.utf8Start, count: needle.utf8CodeUnitCount)
            guard !n.isEmpty else { return true }
            guard h.count >= n.count else { return false }
            outer: for start in 0...(h.count - n.count) {
                for k in 0..<n.count {
                    let c = h[start + k]
                    let lower = c >= 0x41 && c <= 0x5A ? c | 0x20 : c
                    if lower != n[k] { continue outer }
                }
                return true
            }
            return false
        }
    }

    /// Whether the UTF-8 form holds this byte (memchr, no copy).
    func utf8Contains(byte: UInt8) -> Bool {
        var text = self
        return text.withUTF8 { b in
            guard let base = b.baseAddress else { return false }
            return memchr(base, Int32(byte), b.count) != nil
        }
    }
}

extension Array where Element == HeaderField {
    /// First value of a header, case-insensitive.
    public func value(of name: String) -> String? {
        first { $0.name.asciiCaseInsensitiveEquals(name) }?.value
    }
}

/// Lexical JSON masking: no full parse, so it works on truncated or malformed JSON.
/// Every string value under a secret key is masked at any depth; top-level members become params.
enum JSONMasking {
    static func mask(_ b: [UInt8], masker: Masker, location: String, params: inout [OAuthParam]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(b.count + 64)
        var stack: [UInt8] = []
        var expectingKey = false
        var pendingKey: String? = nil
        var i = 0
        let n = b.count
        let quote = UInt8(ascii: "\"")
        while i < n {
            let c = b[i]
            switch c {
            case quote:
                var j = i + 1
                while j < n {
                    if b[j] == UInt8(ascii: "\\") { j += 2; continue }
                    if b[j] == quote { break }
                    j += 1
                }
                let closed = j < n
                let contentEnd = min(j, n)
                let raw = b[(i + 1)..<contentEnd]
                if stack.last == UInt8(ascii: "{") && expectingKey {
                    pendingKey = unescape(raw)
                    expectingKey = false
                    out.append(contentsOf: b[i..<(closed ? j + 1 : n)])
                } else if let key = pendingKey {
                    let value = unescape(raw)
                    if Masker.isSecret(key) {
                        let (masked, param) = masker.secret(kind: key, value: value)
                        out.append(quote)
                        out.append(contentsOf: escape(masked))
                        if closed { out.append(quote) }
                        if stack.count == 1 {
                            params.append(OAuthParam(location: location, name: key, secret: param))
                        }
                    } else {
                        out.append(contentsOf: b[i..<(closed ? j + 1 : n)])
                        if stack.count == 1 {
                            params.append(OAuthParam(location: location, name: key, value: value))
                        }
                    }
                    pendingKey = nil
                } else {
                    out.append(contentsOf: b[i..<(closed ? j + 1 : n)])
                }
                i = closed ? j + 1 : n
                continue
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                if let key = pendingKey, stack.count == 1 {
                    params.append(OAuthParam(location: location, name: key, value: c == UInt8(ascii: "{") ? "{…}" : "[…]"))
                }
                stack.append(c)
                expectingKey = c == UInt8(ascii: "{")
                pendingKey = nil
                out.append(c)
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                _ = stack.popLast()
                pendingKey = nil
                expectingKey = false
                out.append(c)
            case UInt8(ascii: ","):
                expectingKey = stack.last == UInt8(ascii: "{")
                pendingKey = nil
                out.append(c)
            case UInt8(ascii: ":"), 0x20, 0x0A, 0x0D, 0x09:
                out.append(c)
            default:
                // A literal: number, true, false, null.
                var j = i
                while j < n, !isDelimiter(b[j]) { j += 1 }
                if j == i { j = i + 1 }
                let literal = b[i..<j]
                if let key = pendingKey {
                    let text = String(decoding: literal, as: UTF8.self)
                    if Masker.isSecret(key) {
                        let (masked, param) = masker.secret(kind: key, value: text)
                        out.append(contentsOf: Array("\"\(masked)\"".utf8))
                        if stack.count == 1 {
                            params.append(OAuthParam(location: location, name: key, secret: param))
                        }
                    } else {
                        out.append(contentsOf: literal)
                        if stack.count == 1 {
                            params.append(OAuthParam(location: location, name: key, value: text))
                        }
                    }
                    pendingKey = nil
                } else {
                    out.append(contentsOf: literal)
                }
                i = j
                continue
            }
            i += 1
        }
        return out
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
        if !text.utf8Contains(byte: UInt8(ascii: "\"")) && !text.utf8Contains(byte: UInt8(ascii: "\\")) { return Array(text.utf8) }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + 8)
        for c in text.utf8 {
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
            out.append(c)
        }
        return out
    }
}
