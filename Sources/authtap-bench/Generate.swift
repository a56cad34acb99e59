import ArgumentParser
import AuthtapCA
import AuthtapModel
import AuthtapOAuth
import AuthtapStore
import Foundation

/// Writes a synthetic capture for benchmarks: OAuth transactions of about ten exchanges each
/// (authorize, callback, token, userinfo, refreshes, discovery, JWKS, a static asset), one in ten failing.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a synthetic capture session (for benchmarks of the analyzer and the TUI).")
    @OptionGroup var capture: BenchCapture
    @Option(help: "Number of exchanges (about a tenth become transactions).")
    var exchanges: Int = 100_000

    func run() throws {
        let (database, masker, sessionID) = try capture.open(arguments: ["generate", "--exchanges", String(exchanges)])
        var generated = GeneratedCapture(database: database, masker: masker, sessionID: sessionID)
        while generated.written < exchanges {
            generated.flows += 1
            try Self.signIn(generated.flows, into: &generated)
        }
        try generated.finish()
        print("session \(sessionID): \(generated.written) exchanges, \(generated.flows) transactions")
    }

    static let redirect = "https%3A%2F%2Fapp.example%2Fcb"
    static let challenge = "7w_YNF9DSfIdPf_pRjSq646_kPr-2-o9NAl16JGghdM"
    static let form = [HeaderField("Content-Type", "application/x-www-form-urlencoded")]

    /// One sign-in, `n`, ten seconds after the previous one: discovery, authorize, callback, token (the tenth
    /// flow's callback has a tampered state and its code is redeemed twice), JWKS, userinfo, a refresh and a static
    /// asset.
    static func signIn(_ n: Int, into capture: inout GeneratedCapture) throws {
        let t = Double(n) * 10
        let state = "state-\(n)"
        let code = "code-\(n)-\(UUID().uuidString)"
        let verifier = String(repeating: "v", count: 43)
        let failing = n % 10 == 0
        let claimsJSON = #"{"iss":"https://as.example","aud":"app1","sub":"u\#(n)","jti":"\#(UUID().uuidString)"}"#
        let claims = Data(claimsJSON.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
        let idToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.\(claims).c2lnbmF0dXJl"
        try capture.add(
            "GET", "as.example", "/.well-known/openid-configuration", at: t, status: 200,
            responseBody: #"{"issuer":"https://as.example","jwks_uri":"https://as.example/jwks"}"#)
        try capture.add(
            "GET", "as.example",
            "/authorize?response_type=code&client_id=app1&redirect_uri=\(redirect)&state=\(state)"
                + "&scope=openid%20offline_access&code_challenge=\(challenge)&code_challenge_method=S256",
            at: t + 0.1, status: 302,
            response: [HeaderField("Location", "https://app.example/cb?code=\(code)&state=\(state)")])
        try capture.add(
            "GET", "app.example", "/cb?code=\(code)&state=\(failing ? "tampered" : state)", at: t + 0.5,
            status: 200, response: [HeaderField("Content-Type", "text/html")],
            responseBody: "<html>signed in</html>")
        let tokenBody =
            "grant_type=authorization_code&code=\(code)&redirect_uri=\(redirect)&client_id=app1"
            + "&code_verifier=\(verifier)"
        let rt = "rt-\(n)-\(UUID().uuidString)"
        try capture.add(
            "POST", "as.example", "/token", at: t + 0.6, status: 200, request: form, body: tokenBody,
            responseBody: #"{"access_token":"at-\#(n)","token_type":"Bearer","expires_in":3600,"#
                + #""refresh_token":"\#(rt)","id_token":"\#(idToken)"}"#)
        if failing {
            try capture.add(
                "POST", "as.example", "/token", at: t + 0.7, status: 400, request: form, body: tokenBody,
                responseBody: #"{"error":"invalid_grant"}"#)
        }
        try capture.add(
            "GET", "as.example", "/jwks", at: t + 0.8, status: 200,
            responseBody: #"{"keys":[{"kty":"RSA","kid":"k1","n":"AQAB","e":"AQAB"}]}"#)
        for i in 0..<2 {
            try capture.add(
                "GET", "as.example", "/userinfo", at: t + 1 + Double(i), status: 200,
                request: [HeaderField("Authorization", "Bearer at-\(n)")], responseBody: #"{"sub":"u1"}"#)
        }
        let rt2 = "rt2-\(n)-\(UUID().uuidString)"
        try capture.add(
            "POST", "as.example", "/token", at: t + 5, status: 200, request: form,
            body: "grant_type=refresh_token&refresh_token=\(rt)&client_id=app1",
            responseBody: #"{"access_token":"at2-\#(n)","token_type":"Bearer","expires_in":3600,"#
                + #""refresh_token":"\#(rt2)"}"#)
        try capture.add(
            "GET", "cdn.example", "/app.js", at: t + 6, status: 200,
            response: [HeaderField("Content-Type", "text/javascript")], responseBody: "console.log(1)")
    }
}

/// The capture being generated: exchanges masked as the proxy masks them and inserted in batches.
struct GeneratedCapture {
    let database: AppDatabase
    let masker: Masker
    let sessionID: Int64
    var batch: [Exchange] = []
    var written = 0
    var flows = 0
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    init(database: AppDatabase, masker: Masker, sessionID: Int64) {
        self.database = database
        self.masker = masker
        self.sessionID = sessionID
    }

    mutating func add(
        _ method: String, _ host: String, _ target: String, at t: Double, status: Int, request: [HeaderField] = [],
        body: String = "", response: [HeaderField] = [HeaderField("Content-Type", "application/json")],
        responseBody: String = ""
    ) throws {
        var e = Exchange(
            connectionID: UInt64(flows / 10 + 1), clientAddress: "127.0.0.1:40000", scheme: .https, host: host,
            port: 443, method: method, target: target, start: start.addingTimeInterval(t))
        e.sessionID = sessionID
        e.status = status
        e.requestHeaders = [HeaderField("Host", host), HeaderField("User-Agent", "generate/1")] + request
        e.requestBody = CapturedBody(bytes: Array(body.utf8), size: body.utf8.count)
        e.responseHeaders = response
        e.responseBody = CapturedBody(bytes: Array(responseBody.utf8), size: responseBody.utf8.count)
        e.timings.connect = 1
        e.timings.tls = 3
        e.timings.requestSent = 4
        e.timings.firstByte = 9
        e.timings.end = 10
        batch.append(masker.record(e))
        written += 1
        if batch.count == 2000 {
            try database.insert(exchanges: batch, tunnels: [])
            batch.removeAll(keepingCapacity: true)
        }
    }

    mutating func finish() throws {
        if !batch.isEmpty { try database.insert(exchanges: batch, tunnels: []) }
        try database.endSession(sessionID, dropped: 0)
    }
}
