import ArgumentParser
import Foundation

let authtapVersion = "0.1.0"

@main
struct Authtap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authtap",
        abstract: """
            A debugging proxy for OAuth 2.0 / OpenID Connect: records every exchange with its secrets masked, \
            explains why a sign-in failed, and catches TLS handshake failures in packets.
            """,
        version: authtapVersion,
        subcommands: [
            Proxy.self, Env.self, Sessions.self, Exchanges.self, Analyze.self, Rules.self, Capture.self,
            Handshakes.self, TUI.self, Export.self, Import.self, Audit.self,
        ],
        defaultSubcommand: Proxy.self
    )

    /// Everything authtap writes is the user's traffic or a key to it, so it is private to the owner whatever
    /// umask the shell has: this covers the files that libraries create for us (SQLite's -wal and -shm,
    /// libpcap's dump), and the folders; the creators that are ours also set 0600 explicitly.
    static func main() async {
        umask(0o077)
        CrashGuard.install(version: authtapVersion)
        await main(nil)
    }
}
