import ArgumentParser
import AuthtapAnalyzer
import AuthtapCA
import AuthtapHAR
import AuthtapModel
import AuthtapOAuth
import AuthtapStore
import Foundation

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: """
            Import a HAR file (Chrome, Firefox, Safari, mitmproxy, Charles, Proxyman, authtap) as a new session, \
            masked, and analyze it.
            """)
    @Argument(help: "The HAR file.")
    var file: String
    @OptionGroup var db: DatabaseOption
    @Option(help: "Directory of the fingerprint key (masking uses the same key as the proxy).")
    var certs: String = "certs"

    static let maxBytes = 1 << 30

    func run() throws {
        let result = try parse(try readFile())
        let (database, sessionID) = try store(result.exchanges)
        let analysis = Analyzer(caPath: absolute(certs + "/authtap-ca.pem"))
            .analyze(try database.exchanges(session: sessionID, analyzable: true))
        try database.save(analysis: analysis, session: sessionID)
        for (index, reason) in result.skipped {
            let line = "authtap: \(file): entry \(index) skipped: \(TerminalText.escape(reason))\n"
            FileHandle.standardError.write(Data(line.utf8))
        }
        let errors = analysis.findings.filter { $0.severity == .error }.count
        let total = result.exchanges.count + result.skipped.count
        print(
            "imported \(result.exchanges.count) of \(total) entries from \(file) "
                + "(\(TerminalText.escape(result.creator))) as session \(sessionID): "
                + "\(analysis.transactions.count) OAuth transactions, \(errors) errors, "
                + "\(analysis.findings.count - errors) other findings")
    }

    private func fail(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("authtap: \(file): \(message)\n".utf8))
        return ExitCode(2)
    }

    /// The whole file: the document is parsed in memory, so what would not fit is refused rather than read.
    private func readFile() throws -> Data {
        let size = ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.intValue ?? -1
        guard size >= 0 else { throw fail("cannot read the file") }
        guard size <= Self.maxBytes else {
            let limit = Self.maxBytes >> 20
            throw fail("too large: \(size) bytes (authtap imports HAR files up to \(limit) MiB; split it with jq)")
        }
        guard let data = FileManager.default.contents(atPath: file) else { throw fail("cannot read the file") }
        return data
    }

    /// The HAR's entries as exchanges, with a progress bar on a terminal for a large file.
    private func parse(_ data: Data) throws -> HARImport.Result {
        let showProgress = data.count > 10 << 20 && isatty(2) != 0
        var lastShown = -1
        let parsed = HARImport.parse(Array(data)) { done, total in
            guard showProgress else { return }
            let pct = total == 0 ? 100 : done * 100 / total
            if pct != lastShown {
                lastShown = pct
                let bar = String(repeating: "#", count: pct / 4) + String(repeating: ".", count: 25 - pct / 4)
                FileHandle.standardError.write(Data("\rimporting [\(bar)] \(pct)% (\(done)/\(total) entries)".utf8))
                if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
            }
        }
        switch parsed {
        case .failure(let f): throw fail(TerminalText.escape(f.description))
        case .success(let r): return r
        }
    }

    /// Masks the exchanges as the capture does (same masker, same key, same capture-time checks) and stores them as
    /// a new session. A HAR's bodies are whole already (the file is read whole): no capture limit applies to them.
    private func store(_ exchanges: [Exchange]) throws -> (AppDatabase, Int64) {
        let key = try CertsDirectory(path: certs).loadOrCreateFingerprintKey()
        let masker = Masker(fingerprinter: Fingerprinter(key: key), bodyLimit: Self.maxBytes)
        let ledger = JWTLedger()
        let database = try AppDatabase.open(path: db.path)
        let session = try database.startSession(version: authtapVersion, arguments: ["import", file], listen: nil)
        guard let sessionID = session.id else { throw fail("the database did not number the new session") }
        var batch: [Exchange] = []
        for raw in exchanges {
            var e = masker.record(raw, ledger: ledger)
            e.sessionID = session.id
            if let detail = e.errorDetail { e.errorDetail = masker.maskFreeText(detail) }
            batch.append(e)
            if batch.count == 1000 {
                try database.insert(exchanges: batch, tunnels: [])
                batch.removeAll(keepingCapacity: true)
            }
        }
        try database.insert(exchanges: batch, tunnels: [])
        try database.endSession(sessionID, dropped: 0)
        return (database, sessionID)
    }
}
