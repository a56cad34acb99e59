import AuthtapModel

/// One diagnosis the analyzer can make, as a type: what it is called, how bad it can be, what it checks, and
/// how it reads a session. The analyzer, `authtap rules`, the README's table and the proxy's live output all
/// read these declarations from `Rules.all`; none of them lists rules of its own.
package protocol Rule: Sendable {
    /// The id every finding of this rule carries.
    var id: RuleID { get }
    /// The highest severity the rule reports.
    var severity: Severity { get }
    var title: String { get }
    /// What the rule looks at, as `authtap rules` prints it.
    var checks: String { get }
    /// Whether a finding may be printed while the proxy still runs. False for a rule whose evidence is only
    /// complete when the session ends (a later exchange could still clear it).
    var reportsLive: Bool { get }
    /// Reads the session's facts and adds this rule's findings to the context, in exchange order.
    func evaluate(_ c: inout RuleContext)
}

extension Rule {
    package var reportsLive: Bool { true }
}
