import AuthtapAnalyzer
import AuthtapHAR
import AuthtapModel
import AuthtapOAuth
import AuthtapStore
import Foundation

/// The terminal UI as a pure state machine: keys in, a screen buffer out. The ncurses backend only
/// copies the buffer to the terminal and feeds keys; tests drive it the same way.
public final class TUIApp {
    enum Screen {
        case sessions
        case transactions
        case timeline(TransactionRow)
        case exchanges
        case detail(Int64)
        case findings
        case finding(FindingRow)
    }

    let db: AppDatabase
    var stack: [Screen]
    /// The screen on top. `stack` never empties (back on the last screen quits), but a default costs nothing.
    var current: Screen { stack.last ?? .sessions }
    var session: Int64?
    /// Selection and scroll per screen depth.
    var selected: [Int] = [0]
    var top: [Int] = [0]
    var filterText = ""
    var filter = BrowseFilter()
    var editingFilter: String?
    var message: String?
    var showHelp = false
    public private(set) var follow = false
    var detailTab = 0
    var detailScroll = 0
    var bodyHeight = 20
    // Caches, refreshed on changes (and on follow ticks).
    var sessionsCache: [SessionRow]?
    var exchangePager: Pager<ExchangeRow>?
    var transactionPager: Pager<TransactionRow>?
    var findingPager: Pager<FindingRow>?
    var detailCache: (id: Int64, exchange: Exchange?, findings: [FindingRow])?
    var timelineCache: (id: Int64, members: [(leg: String, row: ExchangeRow)])?
    var lastMaxID: Int64 = 0

    public static let tabs = ["Request", "Response", "OAuth", "JWT", "TLS", "Findings"]

    /// Where `e` writes HAR files (the capture database's folder).
    let exportDirectory: String

    public init(db: AppDatabase, session: Int64? = nil, exportDirectory: String = ".") {
        self.db = db
        self.exportDirectory = exportDirectory
        self.session = session
        stack = session == nil ? [.sessions] : [.sessions, .transactions]
        selected = Array(repeating: 0, count: stack.count)
        top = selected
    }

    // MARK: keys

    /// Handles one key; returns false when the UI should quit.
    public func handle(_ key: Key) -> Bool {
        if editingFilter == nil { message = nil }
        if let text = editingFilter {
            switch key {
            case .enter: message = nil; applyFilter(text)
            case .escape: editingFilter = nil
            case .backspace: editingFilter = String(text.dropLast())
            case .char(let c): editingFilter = text + String(c)
            default: break
            }
            return true
        }
        if showHelp {
            if key == .escape || key == .char("q") || key == .char("?") { showHelp = false }
            return true
        }
        switch key {
        case .char("?"): showHelp = true; return true
        case .char("q"), .escape:
            if stack.count <= 1 { return key == .escape ? true : false }
            pop()
            return true
        case .char("/"): editingFilter = filterText; return true
        case .char("f"):
            follow.toggle()
            message =
                follow ? "follow mode on: new exchanges and findings appear as they are written" : "follow mode off"
            if follow { refresh() }
            return true
        case .char("e"):
            exportHAR()
            return true
        case .char("1"): goTop(.sessions); return true
        case .char("2") where session != nil: goTop(.transactions); return true
        case .char("3") where session != nil: goTop(.exchanges); return true
        case .char("4") where session != nil: goTop(.findings); return true
        case .resize: return true
        default: break
        }
        switch current {
        case .detail:
            if key == .tab { detailTab = (detailTab + 1) % Self.tabs.count; detailScroll = 0; return true }
            if key == .backTab {
                detailTab = (detailTab + Self.tabs.count - 1) % Self.tabs.count; detailScroll = 0; return true
            }
            if let m = KeyParser.motion(key) { detailScroll = max(0, scrolled(detailScroll, m, count: Int.max / 2)) }
            return true
        case .finding(let f):
            if let m = KeyParser.motion(key) { move(m, count: f.exchanges.count) }
            if key == .enter, !f.exchanges.isEmpty { push(.detail(f.exchanges[min(cursor, f.exchanges.count - 1)])) }
            return true
        default:
            if let m = KeyParser.motion(key) { move(m, count: listCount()) }
            if key == .enter { open() }
            return true
        }
    }

    /// `e`: the transaction on screen (timeline) or the whole session, to a HAR file next to the database.
    func exportHAR() {
        guard let session else { message = "pick a session first"; return }
        do {
            let stored = try db.analysis(session: session)
            let handshakes = try db.handshakes(session: session).map(\.record)
            var context = HARExport.Context(
                exchanges: try db.exchanges(session: session), analysis: stored, handshakes: handshakes,
                creatorVersion: "tui")
            var name = "authtap-session-\(session)"
            if case .timeline(let t) = current,
                let one = HARExport.transaction(
                    t.number, of: stored, exchanges: context.exchanges, handshakes: handshakes, creatorVersion: "tui")
            {
                context = one
                name += "-transaction-\(t.number)"
            }
            let path = (exportDirectory as NSString).appendingPathComponent(name + ".har")
            let data = try HARExport.data(context)
            try data.write(to: URL(fileURLWithPath: path))
            message = "exported \(context.exchanges.count) entries to \(path) (secrets stay masked)"
        } catch {
            message = "export failed: \(error)"
        }
    }

    func goTop(_ s: Screen) {
        stack = session == nil ? [.sessions] : [.sessions, s]
        if case .sessions = s { stack = [.sessions] }
        selected = Array(repeating: 0, count: stack.count)
        top = selected
    }

    func push(_ s: Screen) {
        stack.append(s)
        selected.append(0)
        top.append(0)
        if case .detail = s { detailTab = 0; detailScroll = 0 }
    }

    func pop() {
        stack.removeLast()
        selected.removeLast()
        top.removeLast()
    }

    var cursor: Int {
        get { selected[selected.count - 1] }
        set { selected[selected.count - 1] = newValue }
    }

    func scrolled(_ v: Int, _ m: KeyParser.Motion, count: Int) -> Int {
        switch m {
        case .by(let d): return v + d
        case .page(let d): return v + d * max(1, bodyHeight - 1)
        case .top: return 0
        case .bottom: return count - 1
        }
    }

    func move(_ m: KeyParser.Motion, count: Int) {
        guard count > 0 else { cursor = 0; return }
        cursor = min(max(0, scrolled(cursor, m, count: count)), count - 1)
    }

    func applyFilter(_ text: String) {
        switch Filter.parse(text) {
        case .failure(let e):
            message = "filter: \(e.message)"
        case .success(let f):
            editingFilter = nil
            filterText = text
            filter = f
            cursor = 0
            top[top.count - 1] = 0
            invalidate()
        }
    }

    func open() {
        switch current {
        case .sessions:
            guard let rows = try? sessions(), cursor < rows.count else { return }
            session = rows[cursor].id
            invalidate()
            push(.transactions)
        case .transactions:
            guard let row = try? transactions().row(at: cursor) else { return }
            push(.timeline(row))
        case .timeline(let t):
            guard let members = try? timeline(t), cursor < members.count else { return }
            push(.detail(members[cursor].row.id))
        case .exchanges:
            guard let row = try? exchanges().row(at: cursor) else { return }
            push(.detail(row.id))
        case .findings:
            guard let row = try? findings().row(at: cursor) else { return }
            push(.finding(row))
        default:
            break
        }
    }

    func listCount() -> Int {
        switch current {
        case .sessions: return (try? sessions().count) ?? 0
        case .transactions: return (try? transactions().total()) ?? 0
        case .timeline(let t): return (try? timeline(t).count) ?? 0
        case .exchanges: return (try? exchanges().total()) ?? 0
        case .findings: return (try? findings().total()) ?? 0
        default: return 0
        }
    }

    // MARK: data (paged and cached)

    func invalidate() {
        sessionsCache = nil
        exchangePager = nil
        transactionPager = nil
        findingPager = nil
        detailCache = nil
        timelineCache = nil
    }

    /// Follow mode: called periodically by the backend; picks up rows another process wrote.
    public func tick() {
        guard follow else { return }
        refresh()
    }

    func refresh() {
        guard let session else { sessionsCache = nil; return }
        let maxID = (try? db.maxExchangeID(session: session)) ?? 0
        let changed = maxID != lastMaxID
        lastMaxID = maxID
        sessionsCache = nil
        exchangePager = nil
        transactionPager = nil
        findingPager = nil
        if changed, case .exchanges = current, let n = try? exchanges().total(), n > 0 {
            cursor = n - 1  // follow the tail
        }
    }

    func sessions() throws -> [SessionRow] {
        if let s = sessionsCache { return s }
        let s = try db.browseSessions()
        sessionsCache = s
        return s
    }

    func transactions() throws -> Pager<TransactionRow> {
        if let p = transactionPager { return p }
        let (db, session, filter) = (self.db, self.session ?? -1, self.filter)
        let p = Pager<TransactionRow>(
            count: { try db.countTransactions(session: session, filter: filter) },
            page: { try db.transactionPage(session: session, filter: filter, offset: $0, limit: $1) })
        transactionPager = p
        return p
    }

    func findings() throws -> Pager<FindingRow> {
        if let p = findingPager { return p }
        let (db, session, filter) = (self.db, self.session ?? -1, self.filter)
        let p = Pager<FindingRow>(
            count: { try db.countFindings(session: session, filter: filter) },
            page: { try db.browseFindings(session: session, filter: filter, offset: $0, limit: $1) })
        findingPager = p
        return p
    }

    func exchanges() throws -> Pager<ExchangeRow> {
        if let p = exchangePager { return p }
        let (db, session, filter) = (self.db, self.session ?? -1, self.filter)
        let p = Pager<ExchangeRow>(
            count: { try db.countExchanges(session: session, filter: filter) },
            page: { try db.exchangePage(session: session, filter: filter, offset: $0, limit: $1) })
        exchangePager = p
        return p
    }

    func timeline(_ t: TransactionRow) throws -> [(leg: String, row: ExchangeRow)] {
        if let c = timelineCache, c.id == t.rowID { return c.members }
        let m = try db.transactionMembers(rowID: t.rowID)
        timelineCache = (t.rowID, m)
        return m
    }

    func detail(_ id: Int64) throws -> (Exchange?, [FindingRow]) {
        if let d = detailCache, d.id == id { return (d.exchange, d.findings) }
        let e = try db.exchange(id: id)
        let f = try session.map { try db.browseFindings(session: $0, filter: BrowseFilter(), exchange: id) } ?? []
        detailCache = (id, e, f)
        return (e, f)
    }
}

/// A list read a page at a time: one COUNT, then LIMIT/OFFSET windows around what is on screen.
final class Pager<Row> {
    private let countQuery: () throws -> Int
    private let pageQuery: (Int, Int) throws -> [Row]
    private var count: Int?
    private var page: (offset: Int, requested: Int, rows: [Row])?

    init(count: @escaping () throws -> Int, page: @escaping (Int, Int) throws -> [Row]) {
        countQuery = count
        pageQuery = page
    }

    func total() throws -> Int {
        if let count { return count }
        let n = try countQuery()
        count = n
        return n
    }

    /// Rows [offset, offset + n), fetched with some margin so that scrolling reuses the page.
    func rows(offset: Int, count n: Int) throws -> [Row] {
        if let p = page, offset >= p.offset {
            let reachedEnd = p.rows.count < p.requested
            if offset + n <= p.offset + p.rows.count || reachedEnd {
                return Array(p.rows.dropFirst(offset - p.offset).prefix(n))
            }
        }
        let start = max(0, offset - n)
        let rows = try pageQuery(start, n * 3)
        page = (start, n * 3, rows)
        return Array(rows.dropFirst(offset - start).prefix(n))
    }

    func row(at index: Int) throws -> Row? { try rows(offset: index, count: 1).first }
}
