import AuthtapModel
import Foundation
import GRDB
import Synchronization

/// Why the capture database could not be opened or read, in one line that names the file.
///
/// A database file is whatever its author left there: hand-edited, truncated, another program's, or written by
/// another version of authtap. Opening or reading it throws this instead of SQLite's message with the whole
/// statement (many lines), and never stops the process.
public struct StoreError: Error, CustomStringConvertible, Sendable {
    private enum Code: Sendable {
        case notSQLite, damaged, notAuthtap, sqlite
    }
    private let code: Code
    public let description: String

    private init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    static func notAuthtap(_ path: String) -> StoreError {
        StoreError(
            .notAuthtap,
            "\(shown(path)) is not an authtap capture database (it has other tables, not authtap's)")
    }

    /// SQLite's own failure, with its message but not the statement.
    static func sqlite(_ error: DatabaseError, path: String) -> StoreError {
        let message = TerminalText.escape(error.message ?? "\(error.resultCode)")
        switch error.resultCode.primaryResultCode {
        case .SQLITE_NOTADB:
            return StoreError(.notSQLite, "\(shown(path)) is not a SQLite database (\(message))")
        case .SQLITE_CORRUPT:
            return StoreError(
                .damaged,
                "\(shown(path)) is damaged (\(message)); `sqlite3 FILE .recover` may save part of it")
        default:
            let code = error.resultCode.primaryResultCode.rawValue
            return StoreError(.sqlite, "\(shown(path)): SQLite error \(code): \(message)")
        }
    }

    /// A value GRDB could not convert (a typed fetch of a damaged value).
    static func undecodable(path: String) -> StoreError {
        StoreError(.damaged, "\(shown(path)) holds a value that is not what its column means")
    }

    /// Maps SQLite's and GRDB's errors to one line; others pass through.
    static func wrap(_ error: any Error, path: String) -> any Error {
        if let error = error as? DatabaseError { return sqlite(error, path: path) }
        if error is RowDecodingError { return undecodable(path: path) }
        return error
    }

    private static func shown(_ path: String) -> String { TerminalText.escape(path) }
}

/// A column whose value cannot be what the column means; the row that holds it is skipped.
struct BadColumn: Error {
    var column: String
    /// What the column holds, as the report says it: `NULL`, `text`, `a blob`, `1e+300`, `-5`.
    var found: String
}

/// The rows a read skipped (or read with a default) because a column held what it cannot hold, one line each:
/// `exchange 17: column status holds text; row skipped`.
///
/// Lines go to standard error as they are found (once each; after `echoLimit` only counted, and the count is
/// printed when the store is closed), unless a caller that owns the terminal (the TUI) turns echo off and asks
/// for `lines()` instead.
public final class ReadProblems: Sendable {
    struct State {
        var seen: Set<String> = []
        var lines: [String] = []
        var echo: Bool
        var echoed = 0
        var hidden = 0
        var total = 0
    }
    static let echoLimit = 100
    /// Distinct lines remembered; past this, further problems are only counted.
    static let keepLimit = 10_000
    private let state: Mutex<State>
    private let source: String

    init(source: String, echo: Bool) {
        self.source = TerminalText.escape(source)
        state = Mutex(State(echo: echo))
    }

    deinit {
        let hidden = state.withLock { $0.hidden }
        if hidden > 0 {
            Self.write("authtap: \(source): \(hidden) more damaged rows were skipped or defaulted (not listed)")
        }
    }

    /// Print each new problem on standard error (the default for a database file) or only keep it.
    public func setEcho(_ on: Bool) {
        state.withLock { $0.echo = on }
    }

    /// Every distinct problem found so far, in order.
    public func lines() -> [String] {
        state.withLock { $0.lines }
    }

    /// How many distinct problems were found.
    public var count: Int {
        state.withLock { $0.total }
    }

    /// `error` is a `BadColumn` (the checked reads throw nothing else).
    func skipped(_ table: String, id: String, _ error: any Error) {
        guard let bad = error as? BadColumn else { return report("\(table) \(id): unreadable; row skipped") }
        report("\(table) \(id): column \(bad.column) holds \(bad.found); row skipped")
    }

    func defaulted(_ table: String, id: String, column: String, found: String, readAs: String) {
        report("\(table) \(id): column \(column) holds \(found); read as \(readAs)")
    }

    func report(_ line: String) {
        let echo: Bool = state.withLock { s in
            guard !s.seen.contains(line) else { return false }
            s.total += 1
            guard s.lines.count < Self.keepLimit else {
                s.hidden += 1
                return false
            }
            s.seen.insert(line)
            s.lines.append(line)
            guard s.echo else { return false }
            guard s.echoed < Self.echoLimit else {
                s.hidden += 1
                return false
            }
            s.echoed += 1
            return true
        }
        if echo { Self.write("authtap: \(source): \(line)") }
    }

    private static func write(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// Checked reads of one stored row by position.
///
/// GRDB's typed subscripts (`row[3] as Int`, even `row[3] as Int?`) stop the process when the value is NULL or of
/// another type, and a file's rows are not ours to trust. Each accessor here returns the value or throws
/// `BadColumn`, and says what a column may hold: NULL only where the schema allows it, whole numbers that fit,
/// sizes that are not negative, finite REALs, dates within years 1–9999. Numbers stored in a text column read as
/// their text, as SQLite itself converts them; a blob in a text column reads as (lossy) UTF-8.
struct StoredRow {
    let row: Row

    init(_ row: Row) { self.row = row }

    func value(_ i: Int) -> DatabaseValue {
        guard i >= 0, i < row.count else { return .null }
        return row[i]
    }

    /// The row's id for a report line: the number, or `?` when the id itself is damaged.
    func label(_ i: Int) -> String {
        if case .int64(let v) = value(i).storage { return String(v) }
        return "?"
    }

    static func describe(_ v: DatabaseValue) -> String {
        switch v.storage {
        case .null: return "NULL"
        case .int64(let n): return String(n)
        case .double(let d): return "\(d)"
        case .string: return "text"
        case .blob: return "a blob"
        }
    }

    // MARK: numbers

    func optionalInt64(_ i: Int, _ column: String) throws(BadColumn) -> Int64? {
        let v = value(i)
        switch v.storage {
        case .null: return nil
        case .int64(let n): return n
        case .double(let d):
            // A whole REAL (a row copied through `CREATE TABLE … AS`, say) is that number; 1e300 or 2.5 is not.
            if let n = Int64(exactly: d) { return n }
        case .string, .blob: break
        }
        throw BadColumn(column: column, found: Self.describe(v))
    }

    func int64(_ i: Int, _ column: String) throws(BadColumn) -> Int64 {
        guard let n = try optionalInt64(i, column) else { throw BadColumn(column: column, found: "NULL") }
        return n
    }

    func optionalInt(_ i: Int, _ column: String) throws(BadColumn) -> Int? {
        guard let n = try optionalInt64(i, column) else { return nil }
        guard let v = Int(exactly: n) else { throw BadColumn(column: column, found: String(n)) }
        return v
    }

    func int(_ i: Int, _ column: String) throws(BadColumn) -> Int {
        guard let n = try optionalInt(i, column) else { throw BadColumn(column: column, found: "NULL") }
        return n
    }

    /// A byte count or a counter: a whole number, never negative.
    func optionalCount(_ i: Int, _ column: String) throws(BadColumn) -> Int? {
        guard let n = try optionalInt(i, column) else { return nil }
        guard n >= 0 else { throw BadColumn(column: column, found: String(n)) }
        return n
    }

    func count(_ i: Int, _ column: String) throws(BadColumn) -> Int {
        guard let n = try optionalCount(i, column) else { throw BadColumn(column: column, found: "NULL") }
        return n
    }

    /// 0 is false, any other whole number true, as SQLite reads a BOOLEAN.
    func bool(_ i: Int, _ column: String) throws(BadColumn) -> Bool {
        try int64(i, column) != 0
    }

    /// A finite REAL (an integer is read as one); infinities are refused.
    func optionalDouble(_ i: Int, _ column: String) throws(BadColumn) -> Double? {
        let v = value(i)
        switch v.storage {
        case .null: return nil
        case .double(let d) where d.isFinite: return d
        case .int64(let n): return Double(n)
        default: throw BadColumn(column: column, found: Self.describe(v))
        }
    }

    func double(_ i: Int, _ column: String) throws(BadColumn) -> Double {
        guard let d = try optionalDouble(i, column) else { throw BadColumn(column: column, found: "NULL") }
        return d
    }

    /// Seconds since 1970 within years 1–9999: what date formatting and calendar arithmetic handle.
    static let dateRange: ClosedRange<Double> = -62_135_596_800...253_402_300_799

    func optionalDate(_ i: Int, _ column: String) throws(BadColumn) -> Date? {
        guard let seconds = try optionalDouble(i, column) else { return nil }
        guard Self.dateRange.contains(seconds) else { throw BadColumn(column: column, found: "\(seconds)") }
        return Date(timeIntervalSince1970: seconds)
    }

    func date(_ i: Int, _ column: String) throws(BadColumn) -> Date {
        guard let d = try optionalDate(i, column) else { throw BadColumn(column: column, found: "NULL") }
        return d
    }

    // MARK: text and bytes

    func optionalText(_ i: Int, _ column: String) throws(BadColumn) -> String? {
        let v = value(i)
        switch v.storage {
        case .null: return nil
        case .string(let s): return s
        case .blob(let data): return String(decoding: data, as: UTF8.self)
        case .int64(let n): return String(n)
        case .double(let d): return "\(d)"
        }
    }

    func text(_ i: Int, _ column: String) throws(BadColumn) -> String {
        guard let s = try optionalText(i, column) else { throw BadColumn(column: column, found: "NULL") }
        return s
    }

    /// A body: NULL is empty; text reads as its UTF-8 bytes.
    func bytes(_ i: Int, _ column: String) throws(BadColumn) -> [UInt8] {
        let v = value(i)
        switch v.storage {
        case .null: return []
        case .blob(let data): return Array(data)
        case .string(let s): return Array(s.utf8)
        case .int64, .double: throw BadColumn(column: column, found: Self.describe(v))
        }
    }
}

extension AppDatabase {
    /// A read whose SQLite and GRDB failures become one-line `StoreError`s.
    func reading<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try writer.read(body)
        } catch {
            throw StoreError.wrap(error, path: writer.path)
        }
    }

    /// Decodes a JSON column, reporting text that does not decode (and using `fallback`).
    func decodeJSON<T: Decodable>(
        _ type: T.Type, _ text: String?, fallback: T, table: String, id: String,
        column: String, readAs: String, decoder: JSONDecoder = JSONDecoder()
    ) -> T {
        guard let text else { return fallback }
        if let value = try? decoder.decode(T.self, from: Data(text.utf8)) { return value }
        readProblems.defaulted(table, id: id, column: column, found: "invalid JSON", readAs: readAs)
        return fallback
    }
}
