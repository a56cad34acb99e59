import ArgumentParser
import AuthtapCA
import AuthtapOAuth
import AuthtapStore
import Foundation

/// The version the sessions it writes carry: the product's, so that a generated capture reads like one `authtap`
/// recorded. Keep it equal to `authtapVersion` in Sources/authtap/Authtap.swift.
let authtapVersion = "0.1.0"

/// Benchmark tools kept out of the product binary: a synthetic capture for the analyzer and the TUI, and the
/// recording path without the network.
@main
struct AuthtapBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authtap-bench",
        abstract: "Benchmark tools for authtap: synthetic captures and the recording path without the network.",
        version: authtapVersion,
        subcommands: [Generate.self, Record.self]
    )

    /// The capture files hold the same kind of rows as authtap's, and get the same owner-only modes.
    static func main() {
        umask(0o077)
        main(nil)
    }
}

/// A failure of the tool itself, reported as one `Error:` line with exit status 1.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Where a bench command writes: the capture database and the fingerprint key, opened with a new session.
struct BenchCapture: ParsableArguments {
    @Option(help: "The capture database to write into.")
    var db: String
    @Option(help: "Directory of the fingerprint key.")
    var certs: String = "certs"

    /// The database, a masker with the key, and the id of a new session recorded with `arguments`.
    func open(arguments: [String]) throws -> (database: AppDatabase, masker: Masker, sessionID: Int64) {
        let database = try AppDatabase.open(path: db)
        let key = try CertsDirectory(path: certs).loadOrCreateFingerprintKey()
        let session = try database.startSession(version: authtapVersion, arguments: arguments, listen: nil)
        guard let sessionID = session.id else { throw BenchError("the database did not number the new session") }
        return (database, Masker(fingerprinter: Fingerprinter(key: key)), sessionID)
    }
}
