import AuthtapStore
import AuthtapTUI
import FuzzSupport

/// The TUI's `/` filter: parsed, then run as the browser runs it (SQL on a store with one session), so a
/// value that reaches the query as anything but a bound argument shows up as an SQLite error or a crash.
let database = try! AppDatabase.inMemory()
let session = try! database.startSession(version: "fuzz", arguments: [], listen: nil)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    if case .success(let filter) = Filter.parse(text), let id = session.id {
        do {
            _ = try database.countExchanges(session: id, filter: filter)
        } catch {
            fatalError("a parsed filter made an invalid query: \(error)")
        }
    }
    return 0
}

@_cdecl("FuzzFilter_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}
