/// `--rewrite-urls`: the upstream's absolute URLs in a response, turned into the reverse listener's, so that a
/// client following OIDC discovery, a redirect or a JWKS URL stays on the proxy. Byte-level and pure: JSON
/// bodies are rewritten where the origin appears, written plainly or with JSON's escaped slashes.
struct OriginRewriter: Sendable {
    /// The upstream's origin (`https://login.example.com`, the port only when not the default).
    let from: String
    /// The listener's origin as the client addressed it (`https://127.0.0.1:8443`).
    let to: String

    /// Whether a response of this type has its body rewritten: JSON (discovery, JWKS, errors). A content-coded body
    /// is decoded first and sent on decoded.
    static func rewritesBody(contentType: String?) -> Bool {
        guard let type = contentType?.lowercased() else { return false }
        let media = type.split(separator: ";").first.map { $0.trimmingSpaces } ?? ""
        return media == "application/json" || media.hasSuffix("+json") || media == "application/jwk-set+json"
    }

    /// `bytes` with every occurrence of the origin replaced, and how many there were. An occurrence counts only
    /// where the origin ends (`https://host` is not rewritten inside `https://host.evil` or `https://host:8443`).
    /// The value of `"issuer"` is kept: it is the identifier the server signs into every token's `iss`
    /// (OpenID Connect Discovery 1.0 §4.3, RFC 8414 §3.3), and a client compares the two.
    func rewrite(_ bytes: [UInt8]) -> (bytes: [UInt8], count: Int) {
        var out = bytes
        var count = 0
        for (needle, replacement) in [(from, to), (Self.jsonEscaped(from), Self.jsonEscaped(to))] {
            let (rewritten, n) = Self.replace(
                Array(needle.utf8), with: Array(replacement.utf8), in: out, keepIssuer: true)
            out = rewritten
            count += n
        }
        return (out, count)
    }

    /// A header value (a `Location`) rewritten when it starts with the origin.
    func rewriteHeader(_ value: String) -> String? {
        let (bytes, count) = Self.replace(
            Array(from.utf8), with: Array(to.utf8), in: Array(value.utf8), prefixOnly: true)
        return count > 0 ? String(decoding: bytes, as: UTF8.self) : nil
    }

    static func jsonEscaped(_ origin: String) -> String {
        origin.replacingOccurrences(of: "/", with: "\\/")
    }

    /// Case-insensitive for the scheme and host (URLs compare them so), exact replacement, boundary-checked.
    static func replace(
        _ needle: [UInt8], with replacement: [UInt8], in haystack: [UInt8], prefixOnly: Bool = false,
        keepIssuer: Bool = false
    ) -> ([UInt8], Int) {
        guard !needle.isEmpty, haystack.count >= needle.count else { return (haystack, 0) }
        var out: [UInt8] = []
        var count = 0
        var copied = 0
        var i = 0
        while i <= haystack.count - needle.count {
            if matches(needle, haystack, at: i) && !continuesOrigin(haystack, at: i + needle.count)
                && !(keepIssuer && isIssuerValue(haystack, at: i))
            {
                out.append(contentsOf: haystack[copied..<i])
                out.append(contentsOf: replacement)
                count += 1
                i += needle.count
                copied = i
                if prefixOnly { break }
                continue
            }
            if prefixOnly { break }
            i += 1
        }
        guard count > 0 else { return (haystack, 0) }
        out.append(contentsOf: haystack[copied...])
        return (out, count)
    }

    private static func matches(_ needle: [UInt8], _ haystack: [UInt8], at start: Int) -> Bool {
        for k in 0..<needle.count where lower(haystack[start + k]) != lower(needle[k]) { return false }
        return true
    }

    /// Whether the byte after a match still belongs to a host name or port (the match is then another origin).
    private static func continuesOrigin(_ bytes: [UInt8], at index: Int) -> Bool {
        guard index < bytes.count else { return false }
        let b = bytes[index]
        return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D
            || b == 0x2E || b == 0x3A || b == 0x5F
    }

    private static func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b | 0x20 : b }

    /// Whether the string starting at `start` is the value of a JSON member named `issuer`: `"issuer" : "` before it.
    private static func isIssuerValue(_ bytes: [UInt8], at start: Int) -> Bool {
        var i = start - 1
        guard i >= 0, bytes[i] == UInt8(ascii: "\"") else { return false }
        i -= 1
        while i >= 0, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i -= 1 }
        guard i >= 0, bytes[i] == UInt8(ascii: ":") else { return false }
        i -= 1
        while i >= 0, bytes[i] == 0x20 || bytes[i] == 0x09 || bytes[i] == 0x0A || bytes[i] == 0x0D { i -= 1 }
        let key = Array("\"issuer\"".utf8)
        guard i - key.count + 1 >= 0 else { return false }
        return Array(bytes[(i - key.count + 1)...i]) == key
    }
}
