import AuthtapModel
import Crypto
import CryptoExtras
import Foundation
import Testing

@testable import AuthtapOAuth

private let ledgerMasker = Masker(fingerprinter: Fingerprinter(key: Array("ledger-test".utf8)))

private func b64(_ d: some DataProtocol) -> String { JWT.base64URL(Array(d)) }

private func exchange(_ target: String, method: String = "GET", body: String = "", response: String) -> Exchange {
    var e = Exchange(
        connectionID: 1, clientAddress: "c", scheme: .https, host: "as.example", port: 443, method: method,
        target: target, start: Date())
    if !body.isEmpty {
        e.requestHeaders = [HeaderField("Content-Type", "application/x-www-form-urlencoded")]
        e.requestBody = CapturedBody(bytes: Array(body.utf8), size: body.utf8.count)
    }
    e.status = 200
    e.responseHeaders = [HeaderField("Content-Type", "application/json")]
    e.responseBody = CapturedBody(bytes: Array(response.utf8), size: response.utf8.count)
    return e
}

private struct Signer {
    var alg: String
    var kid: String
    var jwk: String
    var sign: (Data) throws -> Data

    func token(claims: String = #"{"iss":"https://as.example","aud":"app"}"#) throws -> String {
        let input = b64(Data(#"{"alg":"\#(alg)","kid":"\#(kid)","typ":"JWT"}"#.utf8)) + "." + b64(Data(claims.utf8))
        return input + "." + b64(try sign(Data(input.utf8)))
    }

    static func es256(kid: String) -> Signer {
        let key = P256.Signing.PrivateKey()
        let raw = key.publicKey.rawRepresentation
        return Signer(
            alg: "ES256", kid: kid,
            jwk:
                #"{"kty":"EC","crv":"P-256","kid":"\#(kid)","use":"sig","x":"\#(b64(raw.prefix(32)))","y":"\#(b64(raw.suffix(32)))"}"#,
            sign: { try key.signature(for: $0).rawRepresentation })
    }

    static func rs256(kid: String) throws -> Signer {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let pub = key.publicKey.pkcs1DERRepresentation
        // PKCS#1 RSAPublicKey: SEQUENCE { INTEGER n, INTEGER e }: read the two integers.
        let (n, e) = try #require(Self.rsaIntegers(Array(pub)))
        return Signer(
            alg: "RS256", kid: kid,
            jwk: #"{"kty":"RSA","kid":"\#(kid)","n":"\#(b64(n))","e":"\#(b64(e))"}"#,
            sign: { try key.signature(for: SHA256.hash(data: $0), padding: .insecurePKCS1v1_5).rawRepresentation })
    }

    static func rsaIntegers(_ der: [UInt8]) -> ([UInt8], [UInt8])? {
        var i = 0
        func length() -> Int {
            let first = Int(der[i]); i += 1
            if first < 0x80 { return first }
            var l = 0
            for _ in 0..<(first & 0x7F) { l = l << 8 | Int(der[i]); i += 1 }
            return l
        }
        guard der[i] == 0x30 else { return nil }
        i += 1; _ = length()
        func integer() -> [UInt8] {
            i += 1  // 0x02
            let l = length()
            var bytes = Array(der[i..<(i + l)]); i += l
            while bytes.first == 0 && bytes.count > 1 { bytes.removeFirst() }
            return bytes
        }
        return (integer(), integer())
    }
}

private func verdicts(_ e: Exchange) -> [String: String] {
    Dictionary(
        e.oauthParams.filter { $0.name == "jwt_signature" }.map { ($0.fingerprint ?? "", $0.value) },
        uniquingKeysWith: { a, _ in a })
}

@Test(arguments: ["ES256", "RS256"])
func signaturesAreCheckedWhicheverComesFirst(_ alg: String) throws {
    let signer = alg == "ES256" ? Signer.es256(kid: "k-\(alg)") : try Signer.rs256(kid: "k-\(alg)")
    let good = try signer.token()
    let parts = good.split(separator: ".")
    let tampered = "\(parts[0]).\(b64(Data(#"{"iss":"https://evil.example","aud":"app"}"#.utf8))).\(parts[2])"
    let jwks = exchange("/jwks", response: #"{"keys":[\#(signer.jwk)]}"#)
    func tokenExchange(_ id: String) -> Exchange {
        exchange(
            "/token", method: "POST", body: "grant_type=authorization_code&code=c1",
            response: #"{"access_token":"opaque","token_type":"Bearer","id_token":"\#(id)"}"#)
    }

    // Token first, JWKS later: the verdicts land on the JWKS exchange.
    let ledger = JWTLedger()
    let t1 = ledgerMasker.record(tokenExchange(good), ledger: ledger)
    let t2 = ledgerMasker.record(tokenExchange(tampered), ledger: ledger)
    #expect(verdicts(t1).isEmpty && verdicts(t2).isEmpty)
    let k = ledgerMasker.record(jwks, ledger: ledger)
    #expect(k.roles == [.jwks])
    #expect(
        verdicts(k) == [
            ledgerMasker.fingerprinter.fingerprint(good): "valid",
            ledgerMasker.fingerprinter.fingerprint(tampered): "invalid",
        ])

    // JWKS first: the verdict lands on the token exchange itself.
    let later = JWTLedger()
    _ = ledgerMasker.record(jwks, ledger: later)
    let t3 = ledgerMasker.record(tokenExchange(tampered), ledger: later)
    #expect(verdicts(t3) == [ledgerMasker.fingerprinter.fingerprint(tampered): "invalid"])
    let t4 = ledgerMasker.record(tokenExchange(good), ledger: later)
    #expect(verdicts(t4) == [ledgerMasker.fingerprinter.fingerprint(good): "valid"])
    // Nothing of the raw signature is kept.
    let stored = String(decoding: t4.responseBody.bytes, as: UTF8.self) + t4.oauthParams.map(\.value).joined()
    #expect(!stored.contains(String(parts[2])))
}

@Test func aKeyOfAnotherTypeUnderTheKidIsInvalidAndPendingIsBounded() throws {
    let es = Signer.es256(kid: "shared")
    let rs = try Signer.rs256(kid: "shared")
    let ledger = JWTLedger(pendingLimit: 2)
    _ = ledgerMasker.record(exchange("/jwks", response: #"{"keys":[\#(rs.jwk)]}"#), ledger: ledger)
    let token = try es.token()
    let t = ledgerMasker.record(
        exchange(
            "/token", method: "POST", body: "grant_type=client_credentials",
            response: #"{"access_token":"\#(token)","token_type":"Bearer"}"#), ledger: ledger)
    #expect(verdicts(t) == [ledgerMasker.fingerprinter.fingerprint(token): "invalid"])
    // Unknown kids wait, at most pendingLimit of them.
    let other = JWTLedger(pendingLimit: 2)
    var tokens: [String] = []
    for i in 0..<4 {
        let s = Signer.es256(kid: "k\(i)")
        let tok = try s.token()
        tokens.append(tok)
        _ = ledgerMasker.record(
            exchange(
                "/token", method: "POST", body: "grant_type=client_credentials",
                response: #"{"access_token":"\#(tok)","token_type":"Bearer"}"#), ledger: other)
    }
    // 4 = 2 × limit: trimmed back to the 2 newest. The same token seen again is not queued twice.
    #expect(other.pendingCount == 2)
    _ = ledgerMasker.record(
        exchange(
            "/token", method: "POST", body: "grant_type=client_credentials",
            response: #"{"access_token":"\#(tokens[3])","token_type":"Bearer"}"#), ledger: other)
    #expect(other.pendingCount == 2)
}

/// JWS compact strings found in a raw body: quoted, starting `eyJ`, exactly two dots.
@Test(
    arguments: [
        (#"{"a":"eyJx.y.z","b":"eyJonly.one"}"#, ["eyJx.y.z"]),
        (#"{"id_token":"eyJh.b.c","access_token":"eyJd.e.f"}"#, ["eyJh.b.c", "eyJd.e.f"]),
        (#"["eyJa.b.c.d", "eyJe.f.g"]"#, ["eyJe.f.g"]),
        (#"{"eyJk.e.y":1}"#, ["eyJk.e.y"]),
        (#"{"a":"x","b":"eyJ..","c":""}"#, ["eyJ.."]),
        (#"{"t":"eyJunterminated.a.b"#, []),
        (#"eyJa.b.c"#, []),
        (#""""eyJa.b.c""#, ["eyJa.b.c"]),
        ("", []),
    ] as [(String, [String])])
func jwtCandidatesInBodies(_ body: String, _ expected: [String]) {
    #expect(JWTLedger.jwtCandidates(Array(body.utf8)) == expected)
}
