import ArgumentParser
import AuthtapHAR
import AuthtapModel
import AuthtapOAuth
import AuthtapStore
import Foundation

struct Audit: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Scan a capture or any HAR (a browser's DevTools export) for what still looks like a secret.",
        discussion: """
            Each field is checked with the rules recording uses: secret names in any casing or nesting, credential \
            headers and cookies, JWTs, published token formats and random-looking values. A hit is reported by \
            entry and location, never with its value. Exits 1 when anything is found, 0 when nothing is. Run it \
            before attaching a HAR to a ticket. `--rules` prints the rule tables instead.
            """)
    @Argument(help: "A HAR file to scan (instead of --db).")
    var file: String?
    @OptionGroup var db: DatabaseOption
    @Flag(help: "Print the secret-detection rule tables (names, token formats) with their sources, as JSON.")
    var rules = false

    func run() throws {
        if rules {
            try printRules()
            return
        }
        // A throwaway key: fingerprints are only compared within this run, never shown or stored.
        var random = SystemRandomNumberGenerator()
        let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) }
        let masker = Masker(fingerprinter: Fingerprinter(key: key), bodyLimit: 512 << 20)
        var entries: [(label: String, exchange: Exchange)] = []
        let source: String
        if let file {
            source = file
            guard let data = FileManager.default.contents(atPath: file) else {
                FileHandle.standardError.write(Data("authtap: \(file): cannot read the file\n".utf8))
                throw ExitCode(2)
            }
            switch HARImport.parse(Array(data)) {
            case .failure(let f):
                FileHandle.standardError.write(Data("authtap: \(file): \(TerminalText.escape(f.description))\n".utf8))
                throw ExitCode(2)
            case .success(let result):
                entries = result.exchanges.enumerated().map { ("entry \($0.offset + 1)", $0.element) }
            }
        } else {
            source = db.path
            let database = try openExisting(db.path)
            entries = try database.exchanges().map { ("exchange \($0.id ?? 0)", $0) }
        }
        var found = 0
        for (label, exchange) in entries {
            let hits = SecretAudit.hits(in: exchange, masker: masker)
            guard !hits.isEmpty else { continue }
            var ignored: [OAuthParam] = []
            let url = masker.maskURL(exchange.target, location: .unrecorded, params: &ignored)
            // The file's words (method, host, URL, field names) are escaped for the terminal.
            let place = TerminalText.escape(String("\(exchange.method) \(exchange.host)\(url)".prefix(100)))
            for hit in hits {
                found += 1
                let kinds = hit.kinds.isEmpty ? "secret" : hit.kinds.joined(separator: ", ")
                print("\(label) \(place): \(TerminalText.escape(hit.location)): \(TerminalText.escape(kinds))")
            }
        }
        if found == 0 {
            print("\(source): \(entries.count) entries, nothing that looks like a secret")
        } else {
            print("\(source): \(found) fields in \(entries.count) entries look like secrets")
            throw ExitCode(1)
        }
    }

    private func printRules() throws {
        try printJSON(AuditRulesJSON())
    }
}
