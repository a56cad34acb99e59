import AuthtapModel
import Foundation

/// The `Date` header (RFC 9110 §5.6.7), read by hand: a DateFormatter hands the text to ICU, which traps on some
/// crafted inputs, and this text comes from any server the proxy talks to. Recipients must accept all three
/// forms: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
enum HTTPDate {
    static func parse(_ text: String) -> Date? {
        guard text.utf8.count <= 64 else { return nil }
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        let day: Int, month: Int, year: Int
        let time: Substring
        switch tokens.count {
        case 6 where tokens[0].hasSuffix(","):  // IMF-fixdate
            guard tokens[5] == "GMT" || tokens[5] == "UTC" || tokens[5] == "UT", let d = Int(tokens[1]),
                let m = CivilDate.month(named: tokens[2]), tokens[3].count == 4, let y = Int(tokens[3])
            else { return nil }
            (day, month, year, time) = (d, m, y, tokens[4])
        case 4 where tokens[0].hasSuffix(","):  // RFC 850: DD-Mon-YY, the year in the past century window
            let parts = tokens[1].split(separator: "-", omittingEmptySubsequences: false)
            guard tokens[3] == "GMT", parts.count == 3, let d = Int(parts[0]), let m = CivilDate.month(named: parts[1]),
                parts[2].count == 2, let yy = Int(parts[2])
            else { return nil }
            (day, month, year, time) = (d, m, yy < 70 ? 2000 + yy : 1900 + yy, tokens[2])
        case 5:  // asctime
            guard let m = CivilDate.month(named: tokens[1]), let d = Int(tokens[2]), tokens[4].count == 4,
                let y = Int(tokens[4])
            else { return nil }
            (day, month, year, time) = (d, m, y, tokens[3])
        default:
            return nil
        }
        let clock = time.split(separator: ":", omittingEmptySubsequences: false)
        guard clock.count == 3, clock.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isASCII) }),
            let hour = Int(clock[0]), let minute = Int(clock[1]), let second = Int(clock[2]),
            let seconds = CivilDate.seconds(
                year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        else { return nil }
        return Date(timeIntervalSince1970: Double(seconds))
    }
}
