import AuthtapModel
import Crypto
import CryptoExtras
import Foundation
import Synchronization

/// Signature checks that need the raw token, done at capture time (the signature is masked on disk).
///
/// It remembers the public keys of every JWKS seen during a proxy run, and the JWTs whose key was not
/// known yet (bounded, in memory only). Each check ends as a derived parameter
/// `jwt_signature = valid | invalid | unsupported-alg` whose fingerprint is the token's: on the token
/// response when its key was already known, or on the JWKS response that later published the key.
public final class JWTLedger: Sendable {
    enum Key {
        case rsa(_RSA.Signing.PublicKey)
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
    }
    struct Pending {
        var kid: String
        var token: String
        var fingerprint: String
    }

    private struct State {
        var keys: [String: Key] = [:]
        var pending: [Pending] = []
        /// Fingerprints of `pending`: a token seen again while its key is still unknown is not queued twice.
        var pendingFingerprints: Set<String> = []
    }
    private let state = Mutex(State())
    private let pendingLimit: Int

    /// JWTs waiting for their key. Beyond `2 × pendingLimit` the oldest are dropped down to `pendingLimit`.
    var pendingCount: Int { state.withLock { $0.pending.count } }

    /// - Parameter pendingLimit: JWTs kept while their key is unknown (up to twice as many between trims).
    public init(pendingLimit: Int = 1024) {
        self.pendingLimit = pendingLimit
    }

    /// Derived params for one raw exchange.
    func observe(_ raw: Exchange, roles: [OAuthRole], fingerprint: (String) -> String) -> [OAuthParam] {
        let body = raw.responseBody.bytes
        guard !body.isEmpty, !raw.responseBody.truncated else { return [] }
        var out: [OAuthParam] = []
        state.withLock { (s: inout State) -> Void in
            if roles.contains(.jwks) || (roles.isEmpty && body.count < 262_144 && ByteSearch.contains(body, "\"keys\""))
            {
                let published = parseJWKS(body)
                if !published.isEmpty {
                    for (kid, key) in published { s.keys[kid] = key }
                    var still: [Pending] = []
                    for p in s.pending {
                        if let key = s.keys[p.kid] {
                            out.append(
                                OAuthParam(
                                    location: .derived, name: "jwt_signature",
                                    value: Self.verify(p.token, key: key).rawValue, fingerprint: p.fingerprint))
                        } else {
                            still.append(p)
                        }
                    }
                    s.pending = still
                    s.pendingFingerprints = Set(still.map(\.fingerprint))
                }
            }
            guard roles.contains(.token) || roles.contains(.userinfo) || roles.contains(.introspection) else {
                return
            }
            for token in Self.jwtCandidates(body) {
                let fp = fingerprint(token)
                if s.pendingFingerprints.contains(fp) { continue }
                guard let header = Self.header(of: token) else { continue }
                guard let kid = header["kid"] as? String else {
                    if let alg = header["alg"] as? String, alg != "none" {
                        out.append(
                            OAuthParam(
                                location: .derived, name: "jwt_signature", value: Verdict.noKid.rawValue,
                                fingerprint: fp))
                    }
                    continue
                }
                if let key = s.keys[kid] {
                    out.append(
                        OAuthParam(
                            location: .derived, name: "jwt_signature", value: Self.verify(token, key: key).rawValue,
                            fingerprint: fp))
                } else {
                    s.pending.append(Pending(kid: kid, token: token, fingerprint: fp))
                    s.pendingFingerprints.insert(fp)
                    // Trimmed in halves, not one at a time: removing the first of a full list moves all the others.
                    if s.pending.count >= 2 * pendingLimit {
                        s.pending.removeFirst(s.pending.count - pendingLimit)
                        s.pendingFingerprints = Set(s.pending.map(\.fingerprint))
                    }
                }
            }
        }
        return out
    }

    public enum Verdict: String, Sendable {
        case valid, invalid
        case unsupportedAlg = "unsupported-alg"
        case noKid = "no-kid"
    }

    static func verify(_ token: String, key: Key) -> Verdict {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let header = header(of: token), let alg = header["alg"] as? String,
            let signature = JWT.decodeSegment(parts[2])
        else { return .invalid }
        let input = Data(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        switch (alg, key) {
        case ("RS256", .rsa(let k)), ("RS384", .rsa(let k)), ("RS512", .rsa(let k)), ("PS256", .rsa(let k)),
            ("PS384", .rsa(let k)), ("PS512", .rsa(let k)):
            let sig = _RSA.Signing.RSASignature(rawRepresentation: signature)
            let padding: _RSA.Signing.Padding = alg.hasPrefix("PS") ? .PSS : .insecurePKCS1v1_5
            switch alg.suffix(3) {
            case "256":
                return k.isValidSignature(sig, for: SHA256.hash(data: input), padding: padding) ? .valid : .invalid
            case "384":
                return k.isValidSignature(sig, for: SHA384.hash(data: input), padding: padding) ? .valid : .invalid
            default: return k.isValidSignature(sig, for: SHA512.hash(data: input), padding: padding) ? .valid : .invalid
            }
        case ("ES256", .p256(let k)):
            guard let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return .invalid }
            return k.isValidSignature(sig, for: input) ? .valid : .invalid
        case ("ES384", .p384(let k)):
            guard let sig = try? P384.Signing.ECDSASignature(rawRepresentation: signature) else { return .invalid }
            return k.isValidSignature(sig, for: input) ? .valid : .invalid
        case ("RS256", _), ("RS384", _), ("RS512", _), ("PS256", _), ("PS384", _), ("PS512", _), ("ES256", _),
            ("ES384", _):
            return .invalid  // the key published under this kid is of another type
        default:
            return .unsupportedAlg
        }
    }

    static func header(of token: String) -> [String: Any]? {
        guard let dot = token.utf8.firstIndex(of: UInt8(ascii: ".")),
            let data = JWT.decodeSegment(token.utf8[..<dot]),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else { return nil }
        return object
    }

    func parseJWKS(_ body: [UInt8]) -> [(String, Key)] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let list = object["keys"] as? [[String: Any]]
        else { return [] }
        var result: [(String, Key)] = []
        for jwk in list {
            guard let kid = jwk["kid"] as? String, let kty = jwk["kty"] as? String else { continue }
            if let use = jwk["use"] as? String, use != "sig" { continue }
            func b(_ name: String) -> Data? { (jwk[name] as? String).flatMap { JWT.decodeSegment($0) } }
            switch kty {
            case "RSA":
                if let n = b("n"), let e = b("e"), let key = try? _RSA.Signing.PublicKey(n: n, e: e) {
                    result.append((kid, .rsa(key)))
                }
            case "EC":
                guard let x = b("x"), let y = b("y") else { continue }
                if jwk["crv"] as? String == "P-256", let key = try? P256.Signing.PublicKey(rawRepresentation: x + y) {
                    result.append((kid, .p256(key)))
                } else if jwk["crv"] as? String == "P-384",
                    let key = try? P384.Signing.PublicKey(rawRepresentation: x + y)
                {
                    result.append((kid, .p384(key)))
                }
            default:
                continue
            }
        }
        return result
    }

    /// JWS compact strings inside a JSON body: `"eyJ…"` with exactly two dots.
    static func jwtCandidates(_ body: [UInt8]) -> [String] {
        body.withUnsafeBufferPointer { b -> [String] in
            var result: [String] = []
            guard let base = b.baseAddress else { return result }
            let n = b.count
            let quote = Int32(UInt8(ascii: "\""))
            /// The offset of the next `"` at or after `from`, or `n` (memchr: this runs over every body).
            func nextQuote(_ from: Int) -> Int {
                guard from < n, let hit = memchr(base + from, quote, n - from) else { return n }
                return base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            }
            var i = nextQuote(0)
            while i + 4 < n {
                if b[i + 1] == UInt8(ascii: "e"), b[i + 2] == UInt8(ascii: "y"), b[i + 3] == UInt8(ascii: "J") {
                    let j = nextQuote(i + 1)
                    if j < n {
                        var dots = 0, k = i + 1
                        while dots < 3, k < j, let hit = memchr(base + k, Int32(UInt8(ascii: ".")), j - k) {
                            dots += 1
                            k = base.distance(to: hit.assumingMemoryBound(to: UInt8.self)) + 1
                        }
                        if dots == 2 {
                            result.append(
                                String(decoding: UnsafeBufferPointer(rebasing: b[(i + 1)..<j]), as: UTF8.self))
                        }
                    }
                    i = nextQuote(j + 1)
                    continue
                }
                i = nextQuote(i + 1)
            }
            return result
        }
    }
}
