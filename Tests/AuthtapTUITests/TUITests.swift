import AuthtapAnalyzer
import AuthtapModel
import AuthtapOAuth
import AuthtapStore
import Foundation
import Testing

@testable import AuthtapTUI

// MARK: pure pieces

struct FilterCase: Sendable, CustomStringConvertible {
    var text: String
    var expected: BrowseFilter?
    var description: String { text }
}

let filterCases: [FilterCase] = {
    var a = BrowseFilter(); a.statusClass = 4
    var b = BrowseFilter(); b.words = ["token", "refresh"]; b.host = "idp.example"; b.role = "token"
    var c = BrowseFilter(); c.rule = "code-reuse"; c.severity = "error"
    var d = BrowseFilter(); d.error = "tls"; d.statusExact = 502
    var e = BrowseFilter(); e.statusNone = true
    return [
        .init(text: "status:4xx", expected: a),
        .init(text: "token host:IDP.example role:token refresh", expected: b),
        .init(text: "rule:code-reuse severity:error", expected: c),
        .init(text: "error:tls status:502", expected: d),
        .init(text: "status:none", expected: e),
        .init(text: "status:9xx", expected: nil),
        .init(text: "severity:fatal", expected: nil),
        .init(text: "colour:red", expected: nil),
        .init(text: "host:", expected: nil),
        .init(text: "", expected: BrowseFilter()),
    ]
}()

@Test(arguments: filterCases)
func filterParser(_ c: FilterCase) {
    switch Filter.parse(c.text) {
    case .success(let f): #expect(f == c.expected)
    case .failure: #expect(c.expected == nil)
    }
}

@Test func keyParser() {
    #expect(KeyParser.parse(0o403) == .up)
    #expect(KeyParser.parse(0o522) == .pageDown)
    #expect(KeyParser.parse(10) == .enter && KeyParser.parse(13) == .enter)
    #expect(KeyParser.parse(27) == .escape)
    #expect(KeyParser.parse(9) == .tab)
    #expect(KeyParser.parse(Int32(UInt8(ascii: "j"))) == .char("j"))
    #expect(KeyParser.parse(0x00E9) == .char("é"))
    #expect(KeyParser.motion(.char("G")) == .bottom)
    #expect(KeyParser.motion(.char("k")) == .by(-1))
    #expect(KeyParser.motion(.pageUp) == .page(-1))
    #expect(KeyParser.parse(0o632) == .resize)
}

@Test func screenBufferHandlesWideCharactersAndClipping() {
    var b = ScreenBuffer(rows: 2, cols: 10)
    let end = b.put(0, 0, "日本ab")
    #expect(end == 6)
    #expect(b.line(0) == "日本ab")
    #expect(b.cell(0, 1).text == "")
    b.put(1, 6, "語語語")  // only one wide char fits before the edge plus half: clipped cleanly
    #expect(b.line(1) == "      語語")
    #expect(fit("abcdefgh", 5) == "abcd…")
    #expect(fit("ab", 4) == "ab  ")
    #expect(fit("日本語", 4) == "日… ")
    #expect(ScreenBuffer.width("e\u{301}") == 1)
}

// MARK: the app against a real store

func fixtureDatabase() throws -> (AppDatabase, Int64) {
    let db = try AppDatabase.inMemory()
    let session = try db.startSession(version: "test", arguments: [], listen: "127.0.0.1:8080")
    let masker = Masker(fingerprinter: Fingerprinter(key: Array("tui".utf8)))
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    func ex(
        _ method: String, _ target: String, at: Double, status: Int?, body: String = "", response: String = "",
        error: ErrorKind? = nil,
        headers: [HeaderField] = [], host: String = "idp.example"
    ) -> Exchange {
        var e = Exchange(
            connectionID: 1, clientAddress: "127.0.0.1:1", scheme: .https, host: host, port: 443, method: method,
            target: target,
            start: t0.addingTimeInterval(at))
        e.sessionID = session.id
        e.status = status
        e.requestHeaders =
            headers + (body.isEmpty ? [] : [HeaderField("Content-Type", "application/x-www-form-urlencoded")])
        e.requestBody = CapturedBody(bytes: Array(body.utf8), size: body.utf8.count)
        e.responseHeaders = [HeaderField("Content-Type", "application/json")]
        e.responseBody = CapturedBody(bytes: Array(response.utf8), size: response.utf8.count)
        e.error = error
        e.timings.end = 12
        return masker.record(e)
    }
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSIsImV4cCI6MTgwMDAwMzYwMCwiaWF0IjoxODAwMDAwMDAwfQ.c2ln"
    var rows = [
        ex(
            "GET", "/authorize?response_type=code&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s1",
            at: 0, status: 302),
        ex(
            "POST", "/token", at: 1, status: 200,
            body: "grant_type=authorization_code&code=C1&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
            response: #"{"access_token":"\#(jwt)","token_type":"Bearer","expires_in":3600,"refresh_token":"R1"}"#),
        ex(
            "POST", "/token", at: 1.2, status: 400,
            body: "grant_type=authorization_code&code=C1&client_id=app1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb",
            response: #"{"error":"invalid_grant"}"#),
        ex(
            "GET", "/userinfo", at: 2, status: 200, response: #"{"sub":"u1","name":"Zoë 日本"}"#,
            headers: [HeaderField("Authorization", "Bearer \(jwt)")]),
        ex(
            "POST", "/token", at: 3, status: nil, body: "grant_type=client_credentials&client_id=svc&client_secret=S",
            error: .upstreamTLS, host: "bad.example"),
    ]
    rows[0].responseHeaders = [HeaderField("Location", "https://app.example/cb?code=C1&state=s1")]
    rows[0] = masker.record(rows[0])
    for i in 0..<30 {
        rows.append(ex("GET", "/static/\(i).js", at: 4 + Double(i), status: 200, response: "", host: "cdn.example"))
    }
    try db.insert(exchanges: rows, tunnels: [])
    let analysis = Analyzer().analyze(try db.exchanges(session: session.id!, analyzable: true))
    try db.save(analysis: analysis, session: session.id!)
    return (db, session.id!)
}

func screen(_ app: TUIApp, rows: Int = 24, cols: Int = 120) -> String {
    var b = ScreenBuffer(rows: rows, cols: cols)
    app.render(&b)
    return b.text
}

@Test func sessionsTransactionsTimelineAndDetail() throws {
    let (db, session) = try fixtureDatabase()
    let app = TUIApp(db: db)
    var s = screen(app)
    #expect(s.contains("authtap › Sessions"))
    #expect(s.contains("35"))  // exchanges in the session
    #expect(s.contains("errors"))
    #expect(app.handle(.enter))
    s = screen(app)
    #expect(s.contains("session \(session) › Transactions"))
    #expect(s.contains("app1") && s.contains("failed at token") && s.contains("[code-reuse]"))
    _ = app.handle(.enter)
    s = screen(app)
    #expect(s.contains("Transaction 1"))
    #expect(s.contains("authorize") && s.contains("/token") && s.contains("400"))
    _ = app.handle(.char("j"))
    _ = app.handle(.enter)
    s = screen(app)
    #expect(s.contains("Exchange #2"))
    #expect(s.contains("POST https://idp.example/token HTTP/1.1"))
    #expect(s.contains("[masked code len=2 fp="))
    _ = app.handle(.tab)  // Response: pretty JSON
    s = screen(app)
    #expect(s.contains("\"token_type\": \"Bearer\","))
    _ = app.handle(.tab)
    s = screen(app)
    #expect(s.contains("roles: token"))
    _ = app.handle(.tab)  // JWT: claims with absolute and relative times
    s = screen(app)
    #expect(s.contains("exp: 1800003600") && s.contains("(in 59 min)"))
    _ = app.handle(.tab)
    #expect(screen(app).contains("client ↔ authtap"))
    _ = app.handle(.tab)
    #expect(screen(app).contains("code-reuse"))
    _ = app.handle(.char("q"))
    _ = app.handle(.char("q"))
    _ = app.handle(.char("q"))
    #expect(screen(app).contains("authtap › Sessions"))
    #expect(app.handle(.char("q")) == false)  // q on the top view quits
}

@Test func exchangesFilterAndPaging() throws {
    let (db, _) = try fixtureDatabase()
    let app = TUIApp(db: db, session: 1)
    _ = app.handle(.char("3"))
    var s = screen(app, rows: 12)
    #expect(s.contains("Exchanges (35)"))
    _ = app.handle(.char("G"))
    s = screen(app, rows: 12)
    #expect(s.contains("/static/29.js"))
    #expect(!s.contains("/authorize"))
    _ = app.handle(.char("g"))
    #expect(screen(app, rows: 12).contains("/authorize"))
    for ch in "/status:4xx" { _ = app.handle(.char(ch)) }
    #expect(screen(app).contains("/status:4xx"))
    _ = app.handle(.enter)
    s = screen(app)
    #expect(s.contains("Exchanges (1)") && s.contains("filter: status:4xx"))
    _ = app.handle(.char("/"))
    for _ in 0..<20 { _ = app.handle(.backspace) }
    for ch in "error:tls" { _ = app.handle(.char(ch)) }
    _ = app.handle(.enter)
    s = screen(app)
    #expect(s.contains("Exchanges (1)") && s.contains("bad.example") && s.contains("!upstream-tls"))
    _ = app.handle(.char("/"))
    for _ in 0..<20 { _ = app.handle(.backspace) }
    for ch in "rule:code-reuse" { _ = app.handle(.char(ch)) }
    _ = app.handle(.enter)
    #expect(screen(app).contains("Exchanges (2)"))
    _ = app.handle(.char("/"))
    for ch in " colour:red" { _ = app.handle(.char(ch)) }
    _ = app.handle(.enter)
    #expect(screen(app).contains("filter: unknown filter colour:"))
}

@Test func findingsOpenWithEvidenceAndJumpToExchanges() throws {
    let (db, _) = try fixtureDatabase()
    let app = TUIApp(db: db, session: 1)
    _ = app.handle(.char("4"))
    var s = screen(app)
    #expect(s.contains("ERROR") && s.contains("code-reuse"))
    _ = app.handle(.enter)
    s = screen(app, rows: 40)
    #expect(s.contains("Why:") && s.contains("Fix:") && s.contains("Evidence:") && s.contains("succeeded: #2"))
    _ = app.handle(.enter)
    #expect(screen(app).contains("Exchange #2"))
}

@Test func helpOverlayExportAndFollow() throws {
    let (db, session) = try fixtureDatabase()
    let app = TUIApp(db: db, session: session)
    _ = app.handle(.char("?"))
    var s = screen(app)
    #expect(s.contains("follow mode") && s.contains("PgUp PgDn") && s.contains("Tab"))
    _ = app.handle(.escape)
    _ = app.handle(.char("e"))
    #expect(screen(app).contains("exported 35 entries to ./authtap-session-\(session).har"))
    let har =
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "authtap-session-\(session).har")))
        as? [String: Any]
    #expect(((har?["log"] as? [String: Any])?["entries"] as? [Any])?.count == 35)
    try? FileManager.default.removeItem(atPath: "authtap-session-\(session).har")
    // On a transaction's timeline, e writes just that transaction.
    _ = app.handle(.char("2"))
    _ = app.handle(.enter)
    _ = app.handle(.char("e"))
    #expect(screen(app).contains("exported 4 entries to ./authtap-session-\(session)-transaction-1.har"))
    try? FileManager.default.removeItem(atPath: "authtap-session-\(session)-transaction-1.har")
    _ = app.handle(.char("3"))
    _ = app.handle(.char("f"))
    #expect(app.follow)
    s = screen(app)
    #expect(s.contains("Exchanges (35)") && s.contains("[follow]"))
    // Another writer adds rows: the next tick shows them, and the cursor follows the tail.
    var e = Exchange(
        connectionID: 9, clientAddress: "c", scheme: .https, host: "late.example", port: 443, method: "GET",
        target: "/late", start: Date())
    e.sessionID = session
    e.status = 200
    try db.insert(exchanges: [e], tunnels: [])
    app.tick()
    s = screen(app)
    #expect(s.contains("Exchanges (36)") && s.contains("late.example"))
}

@Test func resizingRelaysOut() throws {
    let (db, session) = try fixtureDatabase()
    let app = TUIApp(db: db, session: session)
    _ = app.handle(.char("3"))
    let small = screen(app, rows: 8, cols: 50)
    #expect(small.split(separator: "\n").allSatisfy { ScreenBuffer.width(String($0)) <= 50 })
    #expect(screen(app, rows: 40, cols: 160).contains("/static/30") == false)
    #expect(screen(app, rows: 40, cols: 160).contains("/static/29.js"))
}
