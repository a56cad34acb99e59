import AuthtapModel
import Foundation

extension Masker {
    // MARK: Headers

    /// Masks credential headers whole (Authorization and Proxy-Authorization keep their scheme, cookies their
    /// names), URLs in URL headers, and anything secret-shaped in every other header (`maskReadable`).
    public func maskHeaders(_ headers: [HeaderField], location: ParamLocation, params: inout [OAuthParam])
        -> [HeaderField]
    {
        // Copied only when a header is rewritten: most response headers are not.
        var out: [HeaderField]? = nil
        for (i, field) in headers.enumerated() {
            // A header seen before and found clean (most response headers, repeated on every exchange) is
            // known by its exact name and value: none of the per-name work below is needed for it.
            let cleanKey = CleanHeaderKey(name: field.name, value: field.value)
            if Self.cleanHeaderValues.known(cleanKey) != nil { continue }
            let lower = field.name.lowercased()
            var value = field.value
            switch lower {
            case "authorization":
                let (masked, found) = maskAuthorization(field.value, kind: "authorization", location: location)
                value = masked
                params += found
            case "proxy-authorization":
                value = maskAuthorization(field.value, kind: "proxy-authorization", location: location).0
            case "cookie":
                value = field.value.split(separator: ";", omittingEmptySubsequences: false).map { crumb -> String in
                    let trimmed = crumb.drop(while: { $0 == " " })
                    let lead = String(crumb.prefix(crumb.count - trimmed.count))
                    guard let eq = trimmed.firstIndex(of: "=") else { return String(crumb) }
                    let name = trimmed[..<eq]
                    return lead + name + "="
                        + marker(kind: "cookie", value: String(trimmed[trimmed.index(after: eq)...]))
                }.joined(separator: ";")
            case "set-cookie":
                let semi = field.value.firstIndex(of: ";") ?? field.value.endIndex
                let pair = field.value[..<semi]
                let attributes = maskReadable(String(field.value[semi...]), name: "set-cookie-attributes")
                if let eq = pair.firstIndex(of: "=") {
                    value =
                        pair[..<eq] + "=" + marker(kind: "cookie", value: String(pair[pair.index(after: eq)...]))
                        + attributes
                } else {
                    value = marker(kind: "cookie", value: String(pair)) + attributes
                }
            case "dpop":
                value = secret(kind: "dpop", value: field.value).masked
            default:
                if Masker.urlHeaders.contains(lower) {
                    value = maskURL(field.value, location: location.header(lower), params: &params)
                } else if SecretNames.isSecret(field.name) {
                    value = secret(kind: lower, value: field.value).masked
                } else {
                    value = maskReadable(field.value, name: lower)
                    if value == field.value { Self.cleanHeaderValues.keep(true, for: cleanKey) }
                }
            }
            guard value != field.value else { continue }
            if out == nil { out = headers }
            out?[i] = HeaderField(field.name, value)
        }
        return out ?? headers
    }

    /// Headers in which the masker found nothing, by exact name and value: traffic repeats the same few
    /// (`Content-Type`, `User-Agent`, `Server`, `Cache-Control`), and looking at each one again is a large part of
    /// the work per exchange. Only headers that took the readable path and were found clean are kept, so no
    /// secret stays here, and a credential-carrying name never does; a clean value is clean for every masker, as
    /// only a marker carries the fingerprint key.
    private static let cleanHeaderValues = NameCache<CleanHeaderKey, Bool>(limit: 4096, maximumLength: 256)

    /// A header by its exact name and value, kept apart (no split of the same bytes into name and value
    /// shares a key) and never joined into one string.
    struct CleanHeaderKey: CacheKey {
        let name: String
        let value: String
        var cacheLength: Int { name.utf8.count + value.utf8.count }
        var isASCIIKey: Bool { name.isASCII && value.isASCII }
    }

    /// `client_id:[masked …]`, as a recorded Basic credential reads: the marker after the first colon.
    static func maskedBasicSecret(_ credential: String) -> (length: Int, fingerprint: String)? {
        guard let colon = credential.firstIndex(of: ":") else { return alreadyMasked(credential) }
        return alreadyMasked(String(credential[credential.index(after: colon)...]))
    }

    /// Masks an Authorization-style header value; returns the masked value and the OAuth params it carried.
    private func maskAuthorization(_ value: String, kind: String, location: ParamLocation) -> (String, [OAuthParam]) {
        var trimmedBytes = value.utf8[...]
        while trimmedBytes.first == 0x20 { trimmedBytes = trimmedBytes.dropFirst() }
        while trimmedBytes.last == 0x20 { trimmedBytes = trimmedBytes.dropLast() }
        let trimmed = String(Substring(trimmedBytes))
        if Self.alreadyMasked(trimmed) != nil { return (value, []) }
        // Split on the bytes: a Character search runs grapheme breaking over the whole value.
        guard let space = trimmed.utf8.firstIndex(of: 0x20) else {
            return (marker(kind: kind, value: trimmed), [])
        }
        let scheme = String(Substring(trimmed.utf8[..<space]))
        var credentialBytes = trimmed.utf8[trimmed.utf8.index(after: space)...]
        while credentialBytes.first == 0x20 { credentialBytes = credentialBytes.dropFirst() }
        let credential = String(Substring(credentialBytes))
        switch scheme.lowercased() {
        case "basic" where kind == "authorization" && Self.maskedBasicSecret(credential) != nil:
            // Already masked (re-imported): `client_id:[masked client_secret …]`.
            let colon = credential.firstIndex(of: ":") ?? credential.startIndex
            let user = String(credential[..<colon])
            guard let (length, fp) = Self.maskedBasicSecret(credential) else { return (value, []) }
            let marker = Self.markerText(kind: "client_secret", length: length, fingerprint: fp)
            return (
                "\(scheme) \(credential)",
                [
                    OAuthParam(location: location.authorization, name: "client_id", value: user),
                    OAuthParam(location: location.authorization, name: "client_secret", secret: (marker, fp)),
                ]
            )
        case "basic" where kind == "authorization":
            // RFC 6749 §2.3.1: client_id:client_secret, each form-urlencoded, then base64.
            var encoded = credential
            guard let data = encoded.withUTF8({ JWT.base64StandardDecoded($0) }),
                let colon = data.firstIndex(of: UInt8(ascii: ":")),
                String(validating: data, as: UTF8.self) != nil
            else {
                return ("\(scheme) \(marker(kind: "basic-credentials", value: credential))", [])
            }
            let user = FormCoding.decode(bytes: data[..<colon])
            let secret = FormCoding.decode(bytes: data[(colon + 1)...])
            let fp = fingerprinter.fingerprint(secret)
            let maskedSecret = Self.markerText(kind: "client_secret", length: secret.utf8.count, fingerprint: fp)
            return (
                "\(scheme) \(user):\(maskedSecret)",
                [
                    OAuthParam(location: location.authorization, name: "client_id", value: user),
                    OAuthParam(location: location.authorization, name: "client_secret", secret: (maskedSecret, fp)),
                ]
            )
        case "bearer", "dpop":
            let (masked, param) = self.secret(kind: "access_token", value: credential)
            return (
                "\(scheme) \(masked)",
                [
                    OAuthParam(location: location.authorization, name: "access_token", secret: param)
                ]
            )
        default:
            return ("\(scheme) \(marker(kind: kind, value: credential))", [])
        }
    }
}
