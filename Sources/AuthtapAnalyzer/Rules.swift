import AuthtapModel

/// The registry: every rule, in the order `authtap rules` and the README list them. Adding a rule is one file
/// in Rules/ and one line here.
package enum Rules {
    package static let all: [any Rule] = [
        CodeReuse(),
        CodeExpired(),
        StateMismatch(),
        NonJSONResponse(),
        TLSFault(),
        RedirectURIMismatch(),
        PKCEMismatch(),
        RefreshTokenReuse(),
        InvalidClient(),
        UnsupportedGrantType(),
        InvalidScope(),
        InvalidRequest(),
        ClockSkew(),
        JWTInvalid(),
        MissingLeg(),
        UpstreamError(),
        WrongEndpoint(),
        InvalidGrant(),
        AuthorizationError(),
    ]
}
