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

/// Masks every secret in an exchange: names in any casing or nesting (see `SecretNames`), JWTs, published
/// token formats and random-looking values wherever they stand (`maskReadable`), in every body shape.
///
/// A masked value becomes `[masked KIND len=N fp=HEX]`. JWTs keep their header and claims:
/// `HEADER.PAYLOAD.[masked KIND-signature len=N fp=HEX]`, where `len` and `fp` cover the whole token.
public struct Masker: Sendable {
    /// Headers that carry URLs whose query or fragment may hold secrets.
    static let urlHeaders: Set<String> = ["location", "referer", "content-location", "refresh"]

    public let fingerprinter: Fingerprinter
    /// Decoded bodies are kept up to this many bytes (the proxy's `--body-limit`).
    public var bodyLimit: Int = 1 << 20
    /// Set only inside one `record` call: the secrets fingerprinted so far, so the JWT ledger
    /// does not compute a token's HMAC a second time.
    var memo: FingerprintMemo?

    public init(fingerprinter: Fingerprinter, bodyLimit: Int = 1 << 20) {
        self.fingerprinter = fingerprinter
        self.bodyLimit = bodyLimit
    }

    /// Whether a parameter, key, field or header name holds a secret (`SecretNames`).
    public static func isSecret(_ name: String) -> Bool { SecretNames.isSecret(name) }

    /// The one spelling of a marker: `[masked KIND len=N fp=HEX]`.
    public static func markerText(kind: String, length: Int, fingerprint: String) -> String {
        // Built as bytes and turned into a String once: appending piece by piece to a String
        // cost a fifth of masking a secret (this runs for every one). The pieces are copied with
        // memcpy at an offset passed along, not by a nested function capturing the offset (whose
        // every byte paid a dynamic exclusivity check).
        var kind = Self.markerKind(kind), fingerprint = fingerprint
        var digits = String(length)  // a small string: no allocation
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
    private static func put(
        _ bytes: UnsafeBufferPointer<UInt8>, into out: UnsafeMutableBufferPointer<UInt8>, at offset: Int
    ) -> Int {
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

    /// A marker's kind names where the secret stood; anything but `[A-Za-z0-9_.-]` becomes `_`, so a
    /// marker always parses back (`alreadyMasked`) whatever name a JSON key or header had.
    static func markerKind(_ kind: String) -> String {
        if kind.utf8.allSatisfy(isKindByte), !kind.isEmpty, kind.utf8.count <= 64 { return kind }
        let cleaned = kind.utf8.prefix(64).map { isKindByte($0) ? $0 : UInt8(ascii: "_") }
        return cleaned.isEmpty ? "secret" : String(decoding: cleaned, as: UTF8.self)
    }

    static func isKindByte(_ c: UInt8) -> Bool { isNameByte(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") }

    /// A value that is exactly one whole marker (an imported authtap HAR, a re-analysed record): its
    /// length and fingerprint. Masking it again must change nothing, so fingerprints survive round trips.
    /// Anything around or after the marker makes it a raw value, so text cannot hide behind one.
    public static func alreadyMasked(_ value: String) -> (length: Int, fingerprint: String)? {
        // Almost every value is a raw secret with no `[`: decide that on the bytes, without Foundation.
        let b = value.utf8
        guard b.first == UInt8(ascii: "["), b.last == UInt8(ascii: "]"), value.hasPrefix("[masked ") else { return nil }
        let inner = value.dropFirst(8).dropLast()
        let parts = inner.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].utf8.allSatisfy(isKindByte),
            parts[1].hasPrefix("len="), let length = Int(parts[1].dropFirst(4)), length >= 0,
            parts[2].hasPrefix("fp="), case let fp = parts[2].dropFirst(3), !fp.isEmpty, fp.utf8.count <= 64,
            fp.allSatisfy(\.isHexDigit)
        else { return nil }
        return (length, String(fp))
    }

    /// A JWS whose signature is already one whole marker: `HEADER.PAYLOAD.[masked KIND-signature …]`.
    static func alreadyMaskedJWT(_ value: String) -> (length: Int, fingerprint: String)? {
        guard value.utf8.first == UInt8(ascii: "e"), value.utf8.last == UInt8(ascii: "]"),
            let open = value.utf8.firstIndex(of: UInt8(ascii: "[")), open > value.utf8.startIndex
        else { return nil }
        let head = value.utf8[..<open]
        guard head.last == UInt8(ascii: "."),
            head.dropLast().allSatisfy({ isBase64URL($0) || $0 == UInt8(ascii: ".") }),
            head.filter({ $0 == UInt8(ascii: ".") }).count == 2
        else { return nil }
        return alreadyMasked(String(Substring(value.utf8[open...])))
    }

    /// Masks one secret; JWTs keep header and claims readable.
    public func mask(kind: String, value: String) -> String {
        secret(kind: kind, value: value).masked
    }

    /// A secret, fingerprinted once: `masked` replaces it in place (a JWT keeps header and claims),
    /// `param` is the short marker an `OAuthParam` carries.
    public func secret(kind: String, value: String) -> (masked: String, param: OAuthParam.Secret) {
        if let (length, fp) = Self.alreadyMasked(value) ?? Self.alreadyMaskedJWT(value) {
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
    /// A readable value is looked at again (`maskReadable`): a URL, JWT or token can stand under any name.
    public func maskPairs(_ text: Substring, location: ParamLocation, params: inout [OAuthParam], depth: Int = 0)
        -> String
    {
        if text.isEmpty { return "" }
        // On the bytes: split at `&`, then at the first `=`; only secret values are rewritten.
        // Copied in one go from contiguous storage (element by element, the copy cost as much as the split).
        let b = text.utf8.withContiguousStorageIfAvailable { Array($0) } ?? Array(text.utf8)
        // RFC 7636 §4.3: a challenge sent with method plain, or with no method, is the verifier itself.
        let plainChallenge = Self.hasPlainChallenge(b)
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
                if Masker.isSecret(name) || (plainChallenge && name == "code_challenge") {
                    let (masked, param) = secret(kind: name, value: value)
                    params.append(OAuthParam(location: location, name: name, secret: param))
                    out.append(contentsOf: b[start...eq])
                    out.append(contentsOf: masked.utf8)
                } else {
                    // The parameter keeps what the text keeps: a secret nested in an ordinary parameter (a `next`
                    // URL carrying a code) is masked in both.
                    let looked = maskReadable(value, name: name, depth: depth)
                    params.append(OAuthParam(location: location, name: name, value: looked))
                    if looked == value {
                        out.append(contentsOf: b[start..<end])
                    } else {
                        out.append(contentsOf: b[start...eq])
                        out.append(contentsOf: FormCoding.encode(looked).utf8)
                    }
                }
            }
            start = end + 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether pairs carry `code_challenge` with `code_challenge_method=plain` or with no method.
    static func hasPlainChallenge(_ b: [UInt8]) -> Bool {
        guard pairValue(named: "code_challenge", in: b) != nil else { return false }
        guard let method = pairValue(named: "code_challenge_method", in: b) else { return true }
        return !method.elementsEqual("S256".utf8)
    }

    /// The raw value of the first `name=` pair in `a=b&c=d` bytes.
    static func pairValue(named name: String, in b: [UInt8]) -> ArraySlice<UInt8>? {
        let key = Array((name + "=").utf8)
        guard b.count >= key.count else { return nil }
        for i in 0...(b.count - key.count) where i == 0 || b[i - 1] == UInt8(ascii: "&") {
            if b[i..<(i + key.count)].elementsEqual(key) {
                return b[(i + key.count)...].prefix { $0 != UInt8(ascii: "&") }
            }
        }
        return nil
    }

    /// Masks the query and fragment of a URL or origin-form target, and what its path may carry
    /// (a JWT or a token as a path segment).
    public func maskURL(_ url: String, location: ParamLocation, params: inout [OAuthParam], depth: Int = 0) -> String {
        var rest = Substring(url)
        var fragment: Substring? = nil
        if let hash = rest.firstIndex(of: "#") {
            fragment = rest[rest.index(after: hash)...]
            rest = rest[..<hash]
        }
        var result: String
        if let q = rest.firstIndex(of: "?") {
            result =
                maskShapes(String(rest[...q]), sweep: true)
                + maskPairs(rest[rest.index(after: q)...], location: location.query, params: &params, depth: depth)
        } else {
            result = maskShapes(String(rest), sweep: true)
        }
        if let fragment {
            result += "#" + maskPairs(fragment, location: location.fragment, params: &params, depth: depth)
        }
        return result
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

    private static func asciiCaseInsensitiveEquals(_ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>)
        -> Bool
    {
        for i in 0..<x.count where !asciiCaseInsensitiveEquals(x[i], y[i]) { return false }
        return true
    }
}
