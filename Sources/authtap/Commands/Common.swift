import ArgumentParser
import AuthtapModel
import AuthtapStore
import Foundation
import Synchronization

/// The shared pieces of the subcommands: option groups, the output format, opening a capture, JSON and dates.

struct CommonPaths: ParsableArguments {
    @Option(help: "Directory of the local CA, the fingerprint key and the trust bundle.")
    var certs: String = "certs"

    @Option(help: "The capture database (SQLite, WAL).")
    var db: String = "Captures/authtap.sqlite"
}

/// `--db` for the commands that read or write a capture without the CA.
struct DatabaseOption: ParsableArguments {
    @Option(name: .customLong("db"), help: "The capture database (SQLite, WAL).")
    var path: String = "Captures/authtap.sqlite"
}

struct ListenOption: ParsableArguments {
    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen: String = "127.0.0.1:8080"

    func parsed() throws -> (String, Int) {
        let usage = "--listen must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080"
        var text = listen
        var host = "127.0.0.1"
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            text = String(text[text.index(after: close)...])
            guard text.hasPrefix(":"), let port = Int(text.dropFirst()), (0...65535).contains(port) else {
                throw ValidationError(usage)
            }
            return (host, port)
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else {
            throw ValidationError(usage)
        }
        host = String(text[..<colon])
        if host.isEmpty { host = "127.0.0.1" }
        return (host, port)
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// A failure of authtap's own, reported as one `Error:` line with exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The row id SQLite gave a record just inserted: always there after an insert, but checked, not trapped on.
func insertedID(_ id: Int64?, of what: String) throws -> Int64 {
    guard let id else { throw CLIError("the database did not number the new \(what)") }
    return id
}

func openExisting(_ path: String) throws -> AppDatabase {
    guard FileManager.default.fileExists(atPath: path) else {
        throw ValidationError("no capture database at \(path): run `authtap proxy` first, or pass --db")
    }
    return try AppDatabase.open(path: path)
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.dateEncodingStrategy = .iso8601
    print(TerminalText.escapeJSON(String(decoding: try encoder.encode(value), as: UTF8.self)))
}

func absolute(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

/// One formatter for the process, since creating one per call dominated large reports; it is not thread-safe.
private let isoFormatter = Mutex<ISO8601DateFormatter>(
    {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }())

func iso(_ date: Date) -> String {
    isoFormatter.withLock { $0.string(from: date) }
}
