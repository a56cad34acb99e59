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
                        body.addNote("body not decoded: \(failure)")
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
            if let charset = text.charset { body.addNote("converted from \(charset)") }
            body.bytes = Array(decoded.utf8)
        } else if let type = contentType, type.utf8ContainsASCIICaseInsensitive("multipart/") {
            // A binary file part must not cost the form's other fields: invalid bytes become U+FFFD and
            // the file part is dropped when it is masked.
            body.bytes = Array(String(decoding: bytes, as: UTF8.self).utf8)
        } else {
            body.bytes = []
            body.addNote("body not kept: \(text.failure ?? "not text")")
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

extension Array where Element == HeaderField {
    /// Every value of a header, case-insensitive, in order (Set-Cookie repeats).
    public func values(of name: String) -> [String] {
        filter { $0.name.asciiCaseInsensitiveEquals(name) }.map(\.value)
    }
}
