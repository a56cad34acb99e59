import AuthtapModel
import Foundation
import Testing

@testable import AuthtapHAR

/// The HTTP version survives export and import, whichever spelling the exporting tool used.
struct HTTPVersionTests {
    /// The spellings real exports use (Tests/fixtures/har and ../shared/reference/har-samples): Chrome writes
    /// `http/2.0` and `h3`, Firefox `HTTP/2`, Charles `HTTP/2.0`; an empty string where a response never came.
    @Test(arguments: [
        ("http/2.0", "HTTP/2"), ("HTTP/2.0", "HTTP/2"), ("HTTP/2", "HTTP/2"), ("h2", "HTTP/2"), ("h3", "HTTP/3"),
        ("HTTP/3", "HTTP/3"), ("http/1.1", "HTTP/1.1"), ("", "HTTP/1.1"),
    ])
    func importReadsEverySpelling(_ written: String, _ read: String) {
        #expect(HARImport.normalizeVersion(written) == read)
    }

    @Test func anHTTP2ExchangeKeepsItsVersionOnBothSidesOfTheEntry() throws {
        var e = Exchange(
            connectionID: 1, clientAddress: "127.0.0.1:5000", scheme: .https, host: "login.example", port: 443,
            method: "GET", target: "/authorize", httpVersion: "HTTP/2",
            start: Date(timeIntervalSince1970: 1_800_000_000))
        e.id = 1
        e.status = 302
        let data = try HARExport.data(
            .init(exchanges: [e], analysis: Analysis(transactions: [], findings: []), creatorVersion: "test"))
        let entry = try #require(
            ((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["log"] as? [String: Any])?["entries"]
                as? [[String: Any]]
        ).first
        #expect((entry?["request"] as? [String: Any])?["httpVersion"] as? String == "HTTP/2")
        #expect((entry?["response"] as? [String: Any])?["httpVersion"] as? String == "HTTP/2")
        guard case .success(let imported) = HARImport.parse(Array(data)) else {
            Issue.record("the export does not import")
            return
        }
        #expect(imported.exchanges.map(\.httpVersion) == ["HTTP/2"])
    }
}
