import AuthtapModel
import Crypto
import Foundation

/// Keyed fingerprints: HMAC-SHA256 with a per-install key, truncated to 12 hex digits.
/// Equal secrets give equal fingerprints; nothing about the secret can be recovered.
public struct Fingerprinter: Sendable {
    /// Keyed once: copying a keyed HMAC skips the per-call key schedule.
    private let keyed: HMAC<SHA256>
    public init(key: [UInt8]) {
        self.keyed = HMAC<SHA256>(key: SymmetricKey(data: key))
    }

    public func fingerprint(_ value: String) -> String {
        var hmac = keyed
        var text = value
        text.withUTF8 { hmac.update(data: UnsafeRawBufferPointer($0)) }
        let mac = hmac.finalize()
        // The first 6 bytes as 12 hex digits: a small string, built in place.
        return mac.withUnsafeBytes { bytes in
            String(unsafeUninitializedCapacity: 12) { out in
                for i in 0..<6 {
                    out[2 * i] = Self.hexDigit(bytes[i] >> 4)
                    out[2 * i + 1] = Self.hexDigit(bytes[i] & 0xF)
                }
                return 12
            }
        }
    }

    private static func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? UInt8(ascii: "0") + v : UInt8(ascii: "a") + v - 10 }
}

/// A set of lower-case ASCII names, looked up ASCII case-insensitively by comparing bytes with the
/// members of the same length: no hashing of the name looked up and no lower-cased copy of it.
struct ASCIINames: Sendable {
    /// Members indexed by their length in bytes.
    private let byLength: [[String]]

    init(_ names: Set<String>) {
        var table = [[String]](repeating: [], count: (names.map(\.utf8.count).max() ?? 0) + 1)
        for name in names.sorted() { table[name.utf8.count].append(name) }
        byLength = table
    }

    /// The member that `name` spells in any ASCII case, or `nil`.
    func member(_ name: String) -> String? {
        let length = name.utf8.count
        guard length < byLength.count else { return nil }
        return byLength[length].first { name.asciiCaseInsensitiveEquals($0) }
    }
}

/// The raw secrets one `Masker.record` call fingerprinted, with their fingerprints. It lives on the
/// writer's stack for that call only (a few entries) and is never stored.
final class FingerprintMemo: @unchecked Sendable {
    private var entries: [(value: String, fingerprint: String)] = []

    func remember(_ value: String, _ fingerprint: String) {
        entries.append((value, fingerprint))
    }

    func fingerprint(of value: String) -> String? {
        let count = value.utf8.count
        for e in entries where e.value.utf8.count == count && e.value == value { return e.fingerprint }
        return nil
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
    /// Every header `maskHeaders` rewrites, lower case: a name its switch handles must be here too,
    /// or that header goes to disk unmasked (`everyMaskedHeaderLosesItsSecret` checks each).
    static let maskedHeaders: Set<String> = credentialHeaders.union(urlHeaders)
        .union(["authorization", "proxy-authorization", "cookie", "set-cookie"])

    static let maskedHeaderNames = ASCIINames(maskedHeaders)

    /// The lower-case name when `name` is one of `maskedHeaders` (ASCII case-insensitive), else `nil`.
    static func maskedHeaderName(_ name: String) -> String? { maskedHeaderNames.member(name) }

    public let fingerprinter: Fingerprinter
    /// Set only inside one `record` call: the secrets fingerprinted so far, so the JWT ledger
    /// does not compute a token's HMAC a second time.
    var memo: FingerprintMemo?

    public init(fingerprinter: Fingerprinter) {
        self.fingerprinter = fingerprinter
    }

    public static func isSecret(_ name: String) -> Bool {
        // ASCII names (nearly all) are matched as bytes in any case, without hashing or a lower-cased
        // copy. Anything else takes Unicode lower-casing, which may fold onto a name (Kelvin sign K → k).
        if name.utf8.allSatisfy({ $0 < 0x80 }) { return secretNameTable.member(name) != nil }
        return secretNames.contains(name.lowercased())
    }

    static let secretNameTable = ASCIINames(secretNames)

    /// The one spelling of a marker: `[masked KIND len=N fp=HEX]`.
    public static func markerText(kind: String, length: Int, fingerprint: String) -> String {
        // Built as bytes and turned into a String once: appending piece by piece to a String
        // cost a fifth of masking a secret (this runs for every one). The pieces are copied with
        // memcpy at an offset passed along, not by a nested function capturing the offset (whose
        // every byte paid a dynamic exclusivity check).
        var kind = kind, fingerprint = fingerprint
        var digits = String(length) // a small string: no allocation
        return kind.withUTF8 { k in
            fingerprint.withUTF8 { f in
                digits.withUTF8 { d in
                    String(unsafeUninitializedCapacity: k.count + f.count + d.count + 18) { out in
                        var n = put("[masked ", into: out, at: 0)
                        n = put(k, into: out, at: n)
                        n = put(" len=", into: out, at: n)
                        n = put(d, into: out, at: n)
                        n = put(" fp=", into: out, at: n)
                        n = put(f, into: out, at: n)
                        return put("]", into: out, at: n)
                    }
                }
            }
        }
    }

    /// Copies `bytes` into `out` at `offset`; returns the offset after them.
    private static func put(_ bytes: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<UInt8>, at offset: Int) -> Int {
        precondition(offset + bytes.count <= out.count)
        if let source = bytes.baseAddress, let target = out.baseAddress {
            (target + offset).update(from: source, count: bytes.count)
        }
        return offset + bytes.count
    }

    private static func put(_ text: StaticString, into out: UnsafeMutableBufferPointer<UInt8>, at offset: Int) -> Int {
        text.withUTF8Buffer { put($0, into: out, at: offset) }
    }

    /// The marker for one secret value.
    public func marker(kind: String, value: String) -> String {
        if Self.alreadyMasked(value) != nil { return value }
        return Self.markerText(kind: kind, length: value.utf8.count, fingerprint: fingerprinter.fingerprint(value))
    }

    /// A value that already carries a marker (an imported authtap HAR, a re-analysed record): its
    /// length and fingerprint. Masking it again must change nothing, so fingerprints survive round trips.
    static func alreadyMasked(_ value: String) -> (length: Int, fingerprint: String)? {
        // Almost every value is a raw secret with no `[`: decide that on the bytes, without Foundation.
        guard value.utf8Contains(byte: UInt8(ascii: "[")) else { return nil }
        guard let open = value.range(of: "[masked "), let fpRange = value[open.upperBound...].range(of: " fp="),
              let lenRange = value[open.upperBound..<fpRange.lowerBound].range(of: " len="),
              let length = Int(value[lenRange.upperBound..<fpRange.lowerBound]),
              let close = value[fpRange.upperBound...].firstIndex(of: "]")
        else { return nil }
        let fp = String(value[fpRange.upperBound..<close])
        guard !fp.isEmpty, fp.allSatisfy(\.isHexDigit) else { return nil }
        return (length, fp)
    }

    /// Masks one secret; JWTs keep header and claims readable.
    public func mask(kind: String, value: String) -> String {
        secret(kind: kind, value: value).masked
    }

    /// A secret, fingerprinted once: `masked` replaces it in place (a JWT keeps header and claims),
    /// `param` is the short marker an `OAuthParam` carries.
    public func secret(kind: String, value: String) -> (masked: String, param: OAuthParam.Secret) {
        if let (length, fp) = Self.alreadyMasked(value) {
            return (value, (Self.markerText(kind: kind, length: length, fingerprint: fp), fp))
        }
        let fp = fingerprinter.fingerprint(value)
        memo?.remember(value, fp)
        let length = value.utf8.count
        let marker = Self.markerText(kind: kind, length: length, fingerprint: fp)
        if JWT.looksLikeJWT(value) {
            // Header and claims stay; the signature (after the last dot) becomes a marker.
            var text = value
            let lastDot = text.withUTF8 { b -> Int in
                var i = b.count - 1
                while i > 0, b[i] != UInt8(ascii: ".") { i -= 1 }
                return i
            }
            let signature = Self.markerText(kind: kind + "-signature", length: length, fingerprint: fp)
            var masked = String(Substring(value.utf8.prefix(lastDot + 1)))
            masked.reserveCapacity(lastDot + 1 + signature.utf8.count)
            masked += signature
            return (masked, (marker, fp))
        }
        return (marker, (marker, fp))
    }

    // MARK: URL-encoded text (query strings, fragments, form bodies)

    /// Masks `a=b&code=...` pairs. Readable values and secret markers are appended to `params`.
    public func maskPairs(_ text: Substring, location: String, params: inout [OAuthParam]) -> String {
        if text.isEmpty { return "" }
        // On the bytes: split at `&`, then at the first `=`; only secret values are rewritten.
        // Copied in one go from contiguous storage (element by element, the copy cost as much as the split).
        let b = text.utf8.withContiguousStorageIfAvailable { Array($0) } ?? Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(b.count + 64)
        var start = 0
        while start <= b.count {
            var end = start
            while end < b.count, b[end] != UInt8(ascii: "&") { end += 1 }
            if start > 0 { out.append(UInt8(ascii: "&")) }
            var eq = start
            while eq < end, b[eq] != UInt8(ascii: "=") { eq += 1 }
            if eq == end {
                out.append(contentsOf: b[start..<end])
            } else {
                let name = FormCoding.decode(bytes: b[start..<eq])
                let value = FormCoding.decode(bytes: b[(eq + 1)..<end])
                if Masker.isSecret(name) {
                    let (masked, param) = secret(kind: name, value: value)
                    params.append(OAuthParam(location: location, name: name, secret: param))
                    out.append(contentsOf: b[start...eq])
                    out.append(contentsOf: masked.utf8)
                } else {
                    params.append(OAuthParam(location: location, name: name, value: value))
                    out.append(contentsOf: b[start..<end])
                }
            }
            start = end + 1
        }
        return String(decoding: out, as: UTF8.self)
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
        // Copied only when a header is rewritten: most response headers are not.
        var out: [HeaderField]? = nil
        for (i, field) in headers.enumerated() {
            // Most headers are not looked at: decided on the bytes, without a lower-cased copy.
            guard let lower = Self.maskedHeaderName(field.name) else { continue }
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
            if out == nil { out = headers }
            out![i] = HeaderField(field.name, value)
        }
        return out ?? headers
    }

    /// Masks an Authorization-style header value; returns the masked value and the OAuth params it carried.
    private func maskAuthorization(_ value: String, kind: String, location: String) -> (String, [OAuthParam]) {
        var trimmedBytes = value.utf8[...]
        while trimmedBytes.first == 0x20 { trimmedBytes = trimmedBytes.dropFirst() }
        while trimmedBytes.last == 0x20 { trimmedBytes = trimmedBytes.dropLast() }
        let trimmed = String(Substring(trimmedBytes))
        // Split on the bytes: a Character search runs grapheme breaking over the whole value.
        guard let space = trimmed.utf8.firstIndex(of: 0x20) else {
            return (marker(kind: kind, value: trimmed), [])
        }
        let scheme = String(Substring(trimmed.utf8[..<space]))
        var credentialBytes = trimmed.utf8[trimmed.utf8.index(after: space)...]
        while credentialBytes.first == 0x20 { credentialBytes = credentialBytes.dropFirst() }
        let credential = String(Substring(credentialBytes))
        switch scheme.lowercased() {
        case "basic" where kind == "authorization" && Self.alreadyMasked(credential) != nil:
            // Already masked (re-imported): `client_id:[masked client_secret …]`.
            let colon = credential.firstIndex(of: ":") ?? credential.startIndex
            let user = String(credential[..<colon])
            let (length, fp) = Self.alreadyMasked(credential)!
            let marker = Self.markerText(kind: "client_secret", length: length, fingerprint: fp)
            return ("\(scheme) \(credential)", [
                OAuthParam(location: location + ".authorization", name: "client_id", value: user),
                OAuthParam(location: location + ".authorization", name: "client_secret", secret: (marker, fp)),
            ])
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
            return ("\(scheme) \(user):\(maskedSecret)", [
                OAuthParam(location: location + ".authorization", name: "client_id", value: user),
                OAuthParam(location: location + ".authorization", name: "client_secret", secret: (maskedSecret, fp)),
            ])
        case "bearer", "dpop":
            let (masked, param) = self.secret(kind: "access_token", value: credential)
            return ("\(scheme) \(masked)", [
                OAuthParam(location: location + ".authorization", name: "access_token", secret: param)
            ])
        default:
            return ("\(scheme) \(marker(kind: kind, value: credential))", [])
        }
    }
}

/// application/x-www-form-urlencoded decoding (`+` is a space), on UTF-8 bytes: no Foundation
/// bridging on the writer's hot path. Invalid escapes are kept as they are.
public enum FormCoding {
    /// The same decoding on bytes already split out of a query or form body.
    public static func decode(bytes: ArraySlice<UInt8>) -> String {
        if !bytes.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) {
            return String(decoding: bytes, as: UTF8.self)
        }
        return decode(Substring(String(decoding: bytes, as: UTF8.self)))
    }

    public static func decode<S: StringProtocol>(_ text: S) -> String {
        let utf8 = text.utf8
        if !utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) { return String(text) }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = utf8.startIndex
        while i != utf8.endIndex {
            let c = utf8[i]
            if c == UInt8(ascii: "+") {
                out.append(0x20)
            } else if c == UInt8(ascii: "%"), let h1 = utf8.index(i, offsetBy: 1, limitedBy: utf8.endIndex), h1 != utf8.endIndex,
                      let h2 = utf8.index(h1, offsetBy: 1, limitedBy: utf8.endIndex), h2 != utf8.endIndex,
                      let hi = hexValue(utf8[h1]), let lo = hexValue(utf8[h2])
            {
                out.append(hi << 4 | lo)
                i = h2
            } else {
                out.append(c)
            }
            i = utf8.index(after: i)
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

extension StringProtocol {
    /// ASCII case-insensitive equality, without Foundation.
    func asciiCaseInsensitiveEquals(_ other: String) -> Bool {
        let a = self.utf8, b = other.utf8
        guard a.count == b.count else { return false }
        // Native strings compare as two byte buffers (this runs for every header and parameter name);
        // other storage (bridged, substrings of those) takes the iterator path.
        if let fast = a.withContiguousStorageIfAvailable({ x in
            b.withContiguousStorageIfAvailable { y in Self.asciiCaseInsensitiveEquals(x, y) }
        }), let result = fast {
            return result
        }
        return zip(a, b).allSatisfy { x, y in Self.asciiCaseInsensitiveEquals(x, y) }
    }

    private static func asciiCaseInsensitiveEquals(_ x: UInt8, _ y: UInt8) -> Bool {
        x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= UInt8(ascii: "a") && (x | 0x20) <= UInt8(ascii: "z"))
    }

    private static func asciiCaseInsensitiveEquals(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>) -> Bool {
        for i in 0..<x.count where !asciiCaseInsensitiveEquals(x[i], y[i]) { return false }
        return true
    }
}
