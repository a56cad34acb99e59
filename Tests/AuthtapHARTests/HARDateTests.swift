import Foundation
import Testing

@testable import AuthtapHAR

/// HAR dates (RFC 3339) are read by hand: ICU, behind ISO8601DateFormatter, dies of a division trap on some
/// inputs (`Tests/fuzz/regressions/HAR/fuzz-icu-fraction-fpe.har`, found by the HAR fuzz target).
@Suite struct HARDateTests {
    /// The shapes the reference exports use (Chrome, Firefox, Safari, Charles, Insomnia).
    @Test(arguments: [
        ("2023-03-29T17:37:42.489-07:00", 1_680_136_662.489),
        ("2024-01-15T09:30:00.123456+01:00", 1_705_307_400.123456),
        ("2024-01-15T08:30:00.000Z", 1_705_307_400),
        ("2024-01-15T08:30:00Z", 1_705_307_400),
        ("2024-02-29T00:00:00+0000", 1_709_164_800),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.5Z", -0.5),
    ])
    func reads(_ text: String, _ seconds: Double) throws {
        let date = try #require(HARDate.date(text))
        #expect(abs(date.timeIntervalSince1970 - seconds) < 0.000_001, "\(text)")
    }

    /// Every well-formed date agrees with Foundation's reading of the same text, across years and offsets.
    @Test func agreesWithFoundationOnOrdinaryDates() {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for year in stride(from: 1601, through: 2401, by: 37) {
            for (month, day) in [(1, 1), (2, 28), (3, 1), (7, 31), (12, 31)] {
                let text = String(format: "%04d-%02d-%02dT13:14:15.250+05:30", year, month, day)
                #expect(HARDate.date(text) == formatter.date(from: text), "\(text)")
            }
        }
    }

    @Test(arguments: [
        "", "2023-03-29", "2023-03-29T17:37:42", "2023-03-29T17:37:42.Z", "2023-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z", "2023-03-29T24:00:00Z", "2023-03-29T17:60:00Z", "2023-03-29T17:37:42+25:00",
        "2023-03-29T17:37:42Zjunk", "١٢٣٤-03-29T17:37:42Z", "9999999999",
    ])
    func refuses(_ text: String) {
        #expect(HARDate.date(text) == nil)
    }

    /// The fuzz finding: a fraction of a hundred digits. Read (to the microsecond), not a crash.
    @Test func aVeryLongFractionIsReadNotTrapped() throws {
        let text = "2023-03-29T17:37:42.4" + String(repeating: "9", count: 100) + "2-07:00"
        let date = try #require(HARDate.date(text))
        #expect(abs(date.timeIntervalSince1970 - 1_680_136_662.499_999) < 0.000_001)
    }
}
