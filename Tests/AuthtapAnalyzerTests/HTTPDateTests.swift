import Foundation
import Testing

@testable import AuthtapAnalyzer

/// The server's `Date` header, in the three forms RFC 9110 §5.6.7 makes recipients accept, without ICU.
@Suite struct HTTPDateTests {
    @Test(arguments: [
        // RFC 9110 §5.6.7's own examples: the same instant three ways.
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_777.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 784_111_777.0),
        ("Sun Nov  6 08:49:37 1994", 784_111_777.0),
        // As nginx, Cloudflare and Google's servers send it.
        ("Fri, 04 Dec 2026 17:57:03 GMT", 1_796_407_023.0),
        ("Thu, 29 Feb 2024 23:59:60 GMT", 1_709_251_200.0),
    ])
    func reads(_ text: String, _ seconds: Double) {
        #expect(HTTPDate.parse(text)?.timeIntervalSince1970 == seconds, "\(text)")
    }

    /// Agrees with Foundation's reading of IMF-fixdate across years.
    @Test func agreesWithFoundation() {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        for step in 0..<200 {
            let date = Date(timeIntervalSince1970: Double(step) * 7_919_113.0)
            let text = f.string(from: date)
            #expect(HTTPDate.parse(text) == date, "\(text)")
        }
    }

    @Test(arguments: [
        "", "yesterday", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT", "Sun, 06 Xyz 1994 08:49:37 GMT", "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37", String(repeating: "Sun, ", count: 40),
        "Sun, 06 Nov 1994 08:49:37.9999999999999999999999999999999999999999 GMT",
    ])
    func refuses(_ text: String) {
        #expect(HTTPDate.parse(text) == nil)
    }
}
