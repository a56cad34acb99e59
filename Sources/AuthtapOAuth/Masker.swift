import AuthtapModel
import Crypto
import Foundation

/// Keyed fingerprints: HMAC-SHA256 with a per-install key, truncated to 12 hex digits.
/// Equal secrets give equal fingerprints; nothing about the secret can be recovered.
public struct Fingerprinter: Sendable {
    private let key: SymmetricKey
    public init(key: [UInt8]) {
        self.key = SymmetricKey(data: key)
    }
    public func fingerprint(_ value: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(value.utf8), using: key)
        return String(mac.prefix(6).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined())
    }
}

/// Masks every secret in an exchange: query strings, fragments, form and JSON bodies (any depth),
/// Location/Referer headers, Authorization, Proxy-Authorization, Cookie and Set-Cookie.
///
/// A masked value becomes `[masked KIND len=N fp=HEX]`. JWTs keep their header and claims:
/// `HEADER.PAYLOAD.[masked KIND-signature len=N fp=HEX]`, where `len` and `fp` cover the whole token.
public struct Masker: Sendable {
    /// Parameter names whose values are secrets, wherever they appear.
    public static let secretNames: Set<String> = [
        "client_secret", "code", "code_verifier", "refresh_token", "access_token", "id_token",
        "assertion", "client_assertion", "password", "device_code", "subject_token", "actor_token",
        "token",
    ]
    /// Headers whose whole value is a credential.
    static let credentialHeaders: Set<String> = ["x-api-key", "x-auth-token", "private-token", "api-key"]
    /// Headers that carry URLs whose query or fragment may hold secrets.
    static let urlHeaders: Set<String> = ["location", "referer", "content-location", "refresh"]

    public let fingerprinter: Fingerprinter

    public init(fingerprinter: Fingerprinter) {
        self.fingerprinter = fingerprinter
    }

    public static func isSecret(_ name: String) -> Bool {
        secretNames.contains(name.lowercased())
    }

    /// The marker for one secret value.
    public func marker(kind: String, value: String) -> String {
        "[masked \(kind) len=\(value.utf8.count) fp=\(fingerprinter.fingerprint(value))]"
    }

    /// Masks one secret; JWTs keep header and claims readable.
    public func mask(kind: String, value: String) -> String {
        if JWT.looksLikeJWT(value) {
            let parts = value.split(separator: ".", omittingEmptySubsequences: false)
            return "\(parts[0]).\(parts[1]).[masked \(kind)-signature len=\(value.utf8.count) fp=\(fingerprinter.fingerprint(value))]"
        }
        return marker(kind: kind, value: value)
    }

    // MARK: URL-encoded text (query strings, fragments, form bodies)

    /// Masks `a=b&code=...` pairs. Readable values and secret markers are appended to `params`.
    public func maskPairs(_ text: Substring, location: String, params: inout [OAuthParam]) -> String {
        if text.isEmpty { return "" }
        var out: [String] = []
        for part in text.split(separator: "&", omittingEmptySubsequences: false) {
            guard let eq = part.firstIndex(of: "=") else {
                out.append(String(part))
                continue
            }
            let rawName = part[..<eq]
            let rawValue = part[part.index(after: eq)...]
            let name = FormCoding.decode(rawName)
            let value = FormCoding.decode(rawValue)
            if Masker.isSecret(name) {
                let masked = mask(kind: name, value: value)
                params.append(OAuthParam(location: location, name: name, value: masked, fingerprint: fingerprinter.fingerprint(value)))
                out.append("\(rawName)=\(masked)")
            } else {
                params.append(OAuthParam(location: location, name: name, value: value))
                out.append(String(part))
            }
        }
        return out.joined(separator: "&")
    }

    /// Masks the query and fragment of a URL or origin-form target.
    public func maskURL(_ url: String, location: String, params: inout [OAuthParam]) -> String {
        var rest = Substring(url)
        var fragment: Substring? = nil
        if let hash = rest.firstIndex(of: "#") {
            fragment = rest[rest.index(after: hash)...]
            rest = rest[..<hash]
        }
        var result: String
        if let q = rest.firstIndex(of: "?") {
            result = String(rest[...q]) + maskPairs(rest[rest.index(after: q)...], location: location + ".query", params: &params)
        } else {
            result = String(rest)
        }
        if let fragment {
            result += "#" + maskPairs(fragment, location: location + ".fragment", params: &params)
        }
        return result
    }

    // MARK: Headers

    public func maskHeaders(_ headers: [HeaderField], location: String, params: inout [OAuthParam]) -> [HeaderField] {
        headers.map { field in
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
                    return lead + name + "=" + marker(kind: "cookie", value: String(trimmed[trimmed.index(after: eq)...]))
                }.joined(separator: ";")
            case "set-cookie":
                let semi = field.value.firstIndex(of: ";") ?? field.value.endIndex
                let pair = field.value[..<semi]
                if let eq = pair.firstIndex(of: "=") {
                    value = pair[..<eq] + "=" + marker(kind: "cookie", value: String(pair[pair.index(after: eq)...])) + field.value[semi...]
                } else {
                    value = marker(kind: "cookie", value: String(pair)) + field.value[semi...]
                }
            default:
                if Masker.urlHeaders.contains(lower) {
                    value = maskURL(field.value, location: location + "." + lower, params: &params)
                } else if Masker.credentialHeaders.contains(lower) {
                    value = marker(kind: lower, value: field.value)
                }
            }
            return HeaderField(field.name, value)
        }
    }

    /// Masks an Authorization-style header value; returns the masked value and the OAuth params it carried.
    private func maskAuthorization(_ value: String, kind: String, location: String) -> (String, [OAuthParam]) {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        guard let space = trimmed.firstIndex(of: " ") else {
            return (marker(kind: kind, value: trimmed), [])
        }
        let scheme = String(trimmed[..<space])
        let credential = String(trimmed[trimmed.index(after: space)...]).trimmingCharacters(in: .whitespaces)
        switch scheme.lowercased() {
        case "basic" where kind == "authorization":
            // RFC 6749 §2.3.1: client_id:client_secret, each form-urlencoded, then base64.
            guard let data = Data(base64Encoded: credential), let decoded = String(data: data, encoding: .utf8),
                  let colon = decoded.firstIndex(of: ":")
            else {
                return ("\(scheme) \(marker(kind: "basic-credentials", value: credential))", [])
            }
            let user = FormCoding.decode(decoded[..<colon])
            let secret = FormCoding.decode(decoded[decoded.index(after: colon)...])
            let maskedSecret = marker(kind: "client_secret", value: secret)
            return ("\(scheme) \(user):\(maskedSecret)", [
                OAuthParam(location: location + ".authorization", name: "client_id", value: user),
                OAuthParam(location: location + ".authorization", name: "client_secret", value: maskedSecret, fingerprint: fingerprinter.fingerprint(secret)),
            ])
        case "bearer", "dpop":
            let masked = mask(kind: "access_token", value: credential)
            return ("\(scheme) \(masked)", [
                OAuthParam(location: location + ".authorization", name: "access_token", value: masked, fingerprint: fingerprinter.fingerprint(credential))
            ])
        default:
            return ("\(scheme) \(marker(kind: kind, value: credential))", [])
        }
    }
}

/// application/x-www-form-urlencoded decoding (`+` is a space).
public enum FormCoding {
    public static func decode<S: StringProtocol>(_ text: S) -> String {
        let spaced = text.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
    }
}
