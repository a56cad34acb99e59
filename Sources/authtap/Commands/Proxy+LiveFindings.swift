import AuthtapAnalyzer
import AuthtapModel
import Dispatch
import Foundation
import Synchronization

/// Live analysis while the proxy runs: keeps the OAuth-relevant exchanges of the session in memory
/// (bounded), re-analyzes at most every 300 ms off the event loops, and prints each finding once.
final class LiveFindings: Sendable {
    private struct Window {
        var exchanges: [Exchange] = []
        var scheduled = false
    }

    private let window = Mutex(Window())
    /// Keys of the findings already printed; only the serial queue's runs touch it, the lock makes that checkable.
    private let printed = Mutex(Set<String>())
    private let queue = DispatchQueue(label: "authtap.live-analysis")
    private let analyzer: Analyzer
    private let limit = 5000
    /// Rules whose evidence is only complete when the session ends, as the rules declare it.
    private let atEndOnly = Set(AuthtapAnalyzer.Rules.all.filter { !$0.reportsLive }.map(\.id))

    init(analyzer: Analyzer) {
        self.analyzer = analyzer
    }

    func add(_ batch: [Exchange]) {
        let relevant = batch.filter { !$0.roles.isEmpty || $0.error != nil }
        guard !relevant.isEmpty else { return }
        let limit = self.limit
        let schedule = window.withLock { w in
            w.exchanges += relevant
            if w.exchanges.count > limit { w.exchanges.removeFirst(w.exchanges.count - limit) }
            let schedule = !w.scheduled
            w.scheduled = true
            return schedule
        }
        if schedule {
            queue.asyncAfter(deadline: .now() + .milliseconds(300)) { [self] in run() }
        }
    }

    private func run() {
        let snapshot = window.withLock { w in
            w.scheduled = false
            return w.exchanges
        }
        let analysis = analyzer.analyze(snapshot)
        let atEndOnly = self.atEndOnly
        let out = printed.withLock { printed in
            var out = ""
            for f in analysis.findings where !atEndOnly.contains(f.rule) {
                let key = "\(f.rule.rawValue)|\(f.title)|\(f.exchanges.first ?? 0)"
                if printed.insert(key).inserted { out += Report.line(f) + "\n" }
            }
            return out
        }
        if !out.isEmpty { FileHandle.standardOutput.write(Data(out.utf8)) }
    }

    /// Waits for a pending run.
    func drain() { queue.sync {} }
}
