import ArgumentParser
import AuthtapCA
import Foundation

struct Env: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print export lines that point clients at authtap: eval \"$(authtap env)\".")
    @OptionGroup var listen: ListenOption
    @Option(help: "Directory of the local CA (created if missing).")
    var certs: String = "certs"

    func run() throws {
        let (host, port) = try listen.parsed()
        let dir = CertsDirectory(path: certs)
        _ = try dir.loadOrCreateCA()
        for line in clientSetupLines(proxyURL: proxyURL(host: host, port: port), certs: dir, export: true) {
            print(line)
        }
    }
}
