import ArgumentParser
import AuthtapModel
import AuthtapStore
import AuthtapTUI
import Foundation

struct TUI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui",
        abstract: "Browse sessions, transactions, exchanges and findings in the terminal (? for keys).")
    @OptionGroup var db: DatabaseOption
    @Option(help: "Open this session's transactions directly.")
    var session: Int64?

    func run() throws {
        let database = try openExisting(db.path)
        // ncurses owns the screen: damaged rows are listed after it is given back, not written across it.
        database.readProblems.setEcho(false)
        if let session, !(try database.sessionIDs().contains(session)) {
            throw ValidationError("no session \(session) in \(db.path)")
        }
        let folder = (absolute(db.path) as NSString).deletingLastPathComponent
        let app = TUIApp(db: database, session: session, exportDirectory: folder)
        Terminal.run(app)
        for line in database.readProblems.lines() {
            FileHandle.standardError.write(Data("authtap: \(TerminalText.escape(db.path)): \(line)\n".utf8))
        }
    }
}
