import AuthtapModel
import AuthtapOAuth
import Foundation

/// Groups exchanges into OAuth transactions by what they share: `state`, code fingerprints,
/// token fingerprints (across refresh rotations), PAR request_uri and device codes.
enum TransactionBuilder {
    static func leg(of f: ExchangeFacts) -> Leg {
        if f.roles.contains(.token) { return f.isRefresh ? .refresh : .token }
        if f.roles.contains(.authorizationRequest) { return .authorize }
        if f.roles.contains(.authorizationResponse) { return .authorizationResponse }
        if f.roles.contains(.callback) { return .callback }
        if f.roles.contains(.pushedAuthorizationRequest) { return .par }
        if f.roles.contains(.deviceAuthorization) { return .device }
        if f.roles.contains(.userinfo) { return .userinfo }
        if f.roles.contains(.introspection) { return .introspection }
        if f.roles.contains(.revocation) { return .revocation }
        // A sign-in step (login form, consent, MFA at the server) has no leg of its own in the model yet.
        return .other
    }

    /// The link keys of one exchange: values that identify one flow wherever they appear.
    /// `state` is handled apart (see `build`), since some clients send a constant state.
    static func keys(of f: ExchangeFacts) -> [String] {
        var keys: [String] = []
        // Hydra's challenge: the authorization request's redirect hands it to the login or consent app, whose
        // sign-in step posts it back.
        let challengeAt: ParamLocation? =
            f.roles.contains(.authorizationRequest)
            ? .responseLocation : f.roles.contains(.signInStep) ? .request : nil
        if let challengeAt {
            for p in f.ex.oauthParams
            where SignInStep.challengeNames.contains(p.name) && p.location.isWithin(challengeAt) && !p.value.isEmpty {
                keys.append("challenge:" + (p.fingerprint ?? p.value))
            }
        }
        for p in f.ex.oauthParams {
            guard let fp = p.fingerprint else {
                if p.name == "request_uri" { keys.append("par:" + p.value) }
                continue
            }
            switch p.name {
            case "code": keys.append("code:" + fp)
            case "access_token", "refresh_token", "id_token", "token": keys.append("tok:" + fp)
            case "device_code": keys.append("device:" + fp)
            default: break
            }
        }
        return keys
    }

    static func state(of f: ExchangeFacts, _ prefix: ParamLocation) -> String? {
        f.ex.oauthParams.first { $0.name == "state" && !$0.value.isEmpty && $0.location.isWithin(prefix) }?.value
    }

    /// Exchanges that take part in transactions (discovery and JWKS stand alone).
    static func participates(_ f: ExchangeFacts) -> Bool {
        !f.roles.isEmpty && !f.roles.isSubset(of: [.discovery, .jwks])
    }

    static func build(_ facts: [ExchangeFacts]) -> (transactions: [Transaction], membership: [Int64: Int]) {
        var transactions: [Transaction] = []
        var membership: [Int64: Int] = [:]
        for group in linkedGroups(facts) {
            let members = group.map { facts[$0] }
            let index = transactions.count + 1
            for f in members { membership[f.id] = index }
            transactions.append(transaction(index, members))
        }
        return (transactions, membership)
    }

    /// The participating exchanges, grouped by what links them (shared keys, an authorization request's state),
    /// as positions in `facts`: groups in the order of their first exchange, members in id order.
    static func linkedGroups(_ facts: [ExchangeFacts]) -> [[Int]] {
        var sets = DisjointSets(count: facts.count)
        var owner: [String: Int] = [:]
        // The latest authorization request per state: a response or code-less callback with that state
        // belongs to it, so a constant state does not chain unrelated flows together.
        var openAuthorize: [String: Int] = [:]
        // States whose authorization request has been answered (a code or an error came back).
        var answered = Set<String>()
        // The latest authorization request per server and client, for a sign-in step that carries no state.
        var latestOfClient: [String: Int] = [:]
        for (i, f) in facts.enumerated() where participates(f) {
            for key in keys(of: f) {
                if let j = owner[key] { sets.union(i, j) } else { owner[key] = i }
            }
            if f.roles.contains(.signInStep),
                let j = authorizationRequest(
                    of: f, facts, openAuthorize: openAuthorize, answered: answered, latestOfClient: latestOfClient)
            {
                sets.union(i, j)
            }
            if f.roles.contains(.authorizationRequest), let client = f.clientID {
                latestOfClient[f.ex.host + " " + client] = i
            }
            if f.roles.contains(.authorizationRequest), let state = state(of: f, .request) {
                // The same sign-in asking again (after the login form, at the consent page): one transaction.
                if let j = openAuthorize[state], !answered.contains(state), facts[j].clientID == f.clientID {
                    sets.union(i, j)
                }
                openAuthorize[state] = i
                answered.remove(state)
            }
            if f.roles.contains(.authorizationResponse), let state = state(of: f, .responseLocation) {
                answered.insert(state)
            }
            let hasCode = f.ex.oauthParams.contains { $0.name == "code" && $0.fingerprint != nil }
            if f.roles.contains(.authorizationResponse), let state = state(of: f, .responseLocation),
                let j = openAuthorize[state]
            {
                sets.union(i, j)
            } else if f.roles.contains(.callback), !hasCode, let state = state(of: f, .request),
                let j = openAuthorize[state]
            {
                sets.union(i, j)
            }
        }
        var groups: [Int: [Int]] = [:]
        var order: [Int] = []
        for (i, f) in facts.enumerated() where participates(f) {
            let root = sets.find(i)
            if groups[root] == nil { order.append(root) }
            groups[root, default: []].append(i)
        }
        // Sign-in steps whose authorization request was not captured make no transaction of their own.
        return order.sorted { facts[$0].id < facts[$1].id }.compactMap { root in
            let members = (groups[root] ?? []).sorted { facts[$0].id < facts[$1].id }
            return members.allSatisfy { facts[$0].roles == [.signInStep] } ? nil : members
        }
    }

    /// The authorization request a sign-in step belongs to: the latest one with the state it carries (of the same
    /// client), else, without a readable state, the latest one of its client at its server while it is unanswered.
    static func authorizationRequest(
        of f: ExchangeFacts, _ facts: [ExchangeFacts], openAuthorize: [String: Int], answered: Set<String>,
        latestOfClient: [String: Int]
    ) -> Int? {
        let client = f.signIn.first { $0.name == "client_id" && !$0.value.isEmpty }?.value
        // A state the masker hid inside a return URL (it looked like a secret there) links nothing: the client decides.
        if let state = f.signIn.first(where: { $0.name == "state" && !$0.value.isEmpty })?.value,
            Masker.alreadyMasked(state) == nil
        {
            guard let j = openAuthorize[state], client == nil || facts[j].clientID == client else { return nil }
            return j
        }
        guard let client, let j = latestOfClient[f.ex.host + " " + client] else { return nil }
        if let state = state(of: facts[j], .request), answered.contains(state) { return nil }
        return j
    }

    /// A transaction from its members (in id order), before the analyzer sets its outcome.
    static func transaction(_ index: Int, _ members: [ExchangeFacts]) -> Transaction {
        let tokenLeg = members.first { $0.roles.contains(.token) }
        let authorize = members.first { $0.roles.contains(.authorizationRequest) }
        return Transaction(
            index: index,
            clientID: members.lazy.compactMap(\.clientID).first,
            serverHost: (tokenLeg ?? authorize)?.ex.host,
            grantType: members.lazy.compactMap(\.grantType).first,
            state: members.lazy.compactMap { $0.value("state", .requestTarget) }.first,
            startedAt: members[0].start,
            outcome: "incomplete",
            members: members.map { Transaction.Member(exchange: $0.id, leg: leg(of: $0)) })
    }
}

/// Union-find over positions, with path halving; a union keeps the smaller root.
struct DisjointSets {
    private var parent: [Int]

    init(count: Int) { parent = Array(0..<count) }

    mutating func find(_ x: Int) -> Int {
        var x = x
        while parent[x] != x {
            parent[x] = parent[parent[x]]
            x = parent[x]
        }
        return x
    }

    mutating func union(_ i: Int, _ j: Int) {
        let a = find(i), b = find(j)
        if a != b { parent[max(a, b)] = min(a, b) }
    }
}
