import ArgumentParser
import AuthtapModel
import AuthtapStore
import AuthtapTUI
import Foundation

struct TUI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui",
        abstract: "Browse sessions, transactions, exchanges and findings in the terminal (? for keys).")
    @Option(help: "The capture database.")
    var db: String = "Captures/authtap.sqlite"
    @Option(help: "Open this session's transactions directly.")
    var session: Int64?

    func run() throws {
        let database = try openExisting(db)
        // ncurses owns the screen: damaged rows are listed after it is given back, not written across it.
        database.readProblems.setEcho(false)
        if let session, !(try database.sessionIDs().contains(session)) {
            throw ValidationError("no session \(session) in \(db)")
        }
        let folder = (absolute(db) as NSString).deletingLastPathComponent
        let app = TUIApp(db: database, session: session, exportDirectory: folder)
        Terminal.run(app)
        for line in database.readProblems.lines() {
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(db)): \(line)\n".utf8))
        }
    }
}
