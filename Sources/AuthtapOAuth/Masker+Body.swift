import AuthtapCodec
import AuthtapModel
import Foundation

extension Masker {
    /// Turns a captured body into what is recorded: decoded (`decodedBody`) and masked as every shape it has.
    public func recordBody(
        _ raw: CapturedBody, headers: [HeaderField], location: ParamLocation, params: inout [OAuthParam]
    ) -> CapturedBody {
        maskDecoded(decodedBody(raw, headers: headers), headers: headers, location: location, params: &params)
    }

    /// Masks a body `decodedBody` produced (UTF-8 text, not yet masked).
    func maskDecoded(
        _ decoded: CapturedBody, headers: [HeaderField], location: ParamLocation, params: inout [OAuthParam]
    ) -> CapturedBody {
        var body = decoded
        guard !decoded.bytes.isEmpty else { return body }
        let text = String(decoding: decoded.bytes, as: UTF8.self)
        let contentType = headers.value(of: "content-type") ?? ""
        body.bytes = Array(maskBodyText(text, contentType: contentType, location: location, params: &params).utf8)
        return body
    }

    /// A captured body as UTF-8 text, not yet masked: Content-Encoding and Transfer-Encoding codings undone,
    /// then the charset converted, bounded by `bodyLimit`. A body that cannot be decoded, or is not text,
    /// is not kept: its size and the reason are (`note`).
    public func decodedBody(_ raw: CapturedBody, headers: [HeaderField]) -> CapturedBody {
        var body = raw
        body.decoded = true
        guard !raw.bytes.isEmpty, !raw.decoded else { return body }
        var bytes = raw.bytes
        do {
            let contentEncoding = headers.value(of: "content-encoding")
            let transferEncoding = headers.value(of: "transfer-encoding")
            if contentEncoding != nil || transferEncoding != nil {
                let decoded = BodyDecoder.decode(
                    raw.bytes, contentEncoding: contentEncoding, transferEncoding: transferEncoding,
                    limit: bodyLimit, inputComplete: !raw.truncated)
                if !decoded.codings.isEmpty || decoded.failure != nil {
                    body.encoding =
                        decoded.codings.isEmpty
                        ? [contentEncoding, transferEncoding].compactMap { $0 }.joined(separator: ", ")
                        : decoded.codings.joined(separator: ", ")
                    if let failure = decoded.failure {
                        body.bytes = []
                        body.note = "body not decoded: \(failure)"
                        return body
                    }
                    bytes = decoded.bytes
                    body.truncated = raw.truncated || decoded.truncated
                    body.decodedSize = body.truncated ? nil : bytes.count
                }
            }
        }
        if bytes.count > bodyLimit {
            bytes.removeLast(bytes.count - bodyLimit)
            body.truncated = true
        }
        let contentType = headers.value(of: "content-type")
        let text = TextDecoding.utf8(bytes, contentType: contentType, truncated: body.truncated)
        if let decoded = text.text {
            if let charset = text.charset { body.note = "converted from \(charset)" }
            body.bytes = Array(decoded.utf8)
        } else if let type = contentType, type.utf8ContainsASCIICaseInsensitive("multipart/") {
            // A binary file part must not cost the form's other fields: invalid bytes become U+FFFD and
            // the file part is dropped when it is masked.
            body.bytes = Array(String(decoding: bytes, as: UTF8.self).utf8)
        } else {
            body.bytes = []
            body.note = "body not kept: \(text.failure ?? "not text")"
        }
        return body
    }

    /// Masks a captured body prefix (UTF-8 bytes). Works on truncated bodies too: JSON is masked lexically,
    /// so an unterminated string at the cut is still masked.
    public func maskBody(
        _ bytes: [UInt8], headers: [HeaderField], location: ParamLocation, params: inout [OAuthParam]
    ) -> [UInt8] {
        let raw = CapturedBody(bytes: bytes, size: bytes.count)
        return recordBody(raw, headers: headers, location: location, params: &params).bytes
    }

    /// Masks decoded text by what it is, whatever its Content-Type says: JSON, multipart, XML or HTML, a form,
    /// or free text. Each structural masker looks at every readable value again for URLs, JWTs and tokens.
    func maskBodyText(_ text: String, contentType: String, location: ParamLocation, params: inout [OAuthParam])
        -> String
    {
        if text.isEmpty { return text }
        if let boundary = Multipart.boundary(contentType: contentType, body: text) {
            return maskMultipart(text, boundary: boundary, location: location, params: &params)
        }
        let firstSignificant = text.utf8.first { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        if firstSignificant == UInt8(ascii: "{") || firstSignificant == UInt8(ascii: "[") {
            let masked = JSONMasking.mask(Array(text.utf8), masker: self, location: location, params: &params)
            return String(decoding: masked, as: UTF8.self)
        }
        if firstSignificant == UInt8(ascii: "<") {
            return maskMarkup(text)
        }
        if FormCoding.looksLikeForm(text) {
            return maskPairs(Substring(text), location: location, params: &params)
        }
        return maskFreeText(text)
    }

}

extension FormCoding {
    /// `a=b&c=d` where every name is a name (`user[password]`, `pf.pass`, `x%5By%5D`): a value holding a
    /// form, not text that happens to contain `=` (a JWT whose signature is a marker, base64 padding).
    static func looksLikePairs(_ text: String) -> Bool {
        guard looksLikeForm(text) else { return false }
        for pair in text.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            guard let eq = pair.firstIndex(of: UInt8(ascii: "=")), eq > pair.startIndex,
                pair[..<eq].allSatisfy({ Masker.isNameByte($0) || Masker.isNameJoiner($0) })
            else { return false }
        }
        return true
    }

    /// `a=b&c=d` with no whitespace: a form body sent without a Content-Type.
    public static func looksLikeForm(_ text: String) -> Bool {
        guard text.utf8Contains(byte: UInt8(ascii: "=")), text.utf8.count < 1 << 20 else { return false }
        let isBreak: (UInt8) -> Bool = {
            $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 || $0 == UInt8(ascii: "<")
        }
        guard text.utf8Contains(where: isBreak) else { return true }
        // A recorded form holds markers, and markers hold spaces: look at the text between them.
        guard text.utf8Contains("[masked ") else { return false }
        let bytes = Array(text.utf8)
        var cursor = 0
        for marker in Masker.markerRanges(in: bytes) {
            if bytes[cursor..<marker.lowerBound].contains(where: isBreak) { return false }
            cursor = marker.upperBound
        }
        return !bytes[cursor...].contains(where: isBreak)
    }
}

extension String {
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

    /// `utf8.contains(where:)` over the contiguous bytes: the view's own iterator goes index by index.
    func utf8Contains(where predicate: (UInt8) -> Bool) -> Bool {
        var text = self
        return text.withUTF8 { $0.contains(where: predicate) }
    }

    /// Every byte below 0x80.
    var isASCII: Bool { !utf8Contains { $0 >= 0x80 } }
}

extension Array where Element == HeaderField {
    /// First value of a header, case-insensitive.
    public func value(of name: String) -> String? {
        first { $0.name.asciiCaseInsensitiveEquals(name) }?.value
    }
}

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
