import Foundation
import NIOHTTP1
import Testing

@testable import AuthtapProxy

private func basic(_ text: String) -> HTTPHeaders {
    HTTPHeaders([("Proxy-Authorization", "Basic " + Data(text.utf8).base64EncodedString())])
}

@Test func credentialsNeedAUserAndAPassword() {
    #expect(ProxyCredentials("alice:s3cret") == ProxyCredentials(user: "alice", password: "s3cret"))
    #expect(ProxyCredentials("alice:pa:ss")?.password == "pa:ss")
    for bad in ["alice:", ":s3cret", "alice", "", ":"] { #expect(ProxyCredentials(bad) == nil, "\(bad)") }
}

@Test func onlyTheExactCredentialsAreAccepted() {
    let c = ProxyCredentials(user: "alice", password: "s3cret")
    #expect(c.accepts(basic("alice:s3cret")))
    let lowerCase = "basic " + Data("alice:s3cret".utf8).base64EncodedString()
    #expect(c.accepts(HTTPHeaders([("proxy-authorization", lowerCase)])))
    for wrong in ["alice:s3cre", "alice:s3cret!", "alice:s3creT", "alic:s3cret", "", "alice:s3cretalice:s3cret"] {
        #expect(!c.accepts(basic(wrong)), "\(wrong)")
    }
    #expect(!c.accepts(HTTPHeaders([("Proxy-Authorization", "Bearer x")])))
    #expect(!c.accepts(HTTPHeaders([("Proxy-Authorization", "Basic !!!")])))
    #expect(!c.accepts(HTTPHeaders()))
}

@Test func constantTimeEqualityComparesEveryByte() {
    let secret = Array("alice:s3cret".utf8)
    #expect(ProxyCredentials.constantTimeEqual(secret, secret))
    // A prefix, a repetition (which cycling the expected value must not accept) and the empty input.
    #expect(!ProxyCredentials.constantTimeEqual(Array(secret.prefix(5)), secret))
    #expect(!ProxyCredentials.constantTimeEqual(secret + secret, secret))
    #expect(!ProxyCredentials.constantTimeEqual([], secret))
    #expect(!ProxyCredentials.constantTimeEqual(secret, []))
}
