use super::*;

const DAY: u64 = 86_400;
const T0: u64 = 1_795_000_000;

fn claims() -> Claims {
    Claims {
        licensee: "Acme Edge".to_owned(),
        scope: Scope {
            fleets: vec!["north".to_owned()],
            devices: vec!["edge-7".to_owned()],
        },
        issued_at: T0,
        expires_at: T0 + 30 * DAY,
        features: Features {
            plugin_kinds: Some(vec!["validator".to_owned(), "sampler".to_owned()]),
            max_plugins: Some(4),
        },
        grace_hours: Some(48),
    }
}

fn host(id: &str, fleet: Option<&str>) -> HostIdentity {
    HostIdentity {
        host_id: id.to_owned(),
        fleet: fleet.map(str::to_owned),
    }
}

#[test]
fn issued_token_verifies_and_round_trips_claims() {
    let key = KeyPair::generate().unwrap();
    let token = issue(&claims(), &key);
    assert!(token.expose().starts_with("hl1."));
    let got = verify(
        token.expose(),
        &[key.public_key()],
        &host("edge-7", None),
        T0 + 1,
    )
    .unwrap();
    assert_eq!(got, claims());
}

#[test]
fn any_trusted_key_may_have_signed() {
    let old = KeyPair::generate().unwrap();
    let new = KeyPair::generate().unwrap();
    let token = issue(&claims(), &old);
    let trusted = [new.public_key(), old.public_key()];
    assert!(verify_signature(token.expose(), &trusted).is_ok());
}

#[test]
fn wrong_key_and_forged_claims_are_bad_signatures() {
    let vendor = KeyPair::generate().unwrap();
    let mallory = KeyPair::generate().unwrap();
    let trusted = [vendor.public_key()];
    let forged = issue(&claims(), &mallory);
    assert_eq!(
        verify_signature(forged.expose(), &trusted),
        Err(LicenceError::BadSignature)
    );
    // Swap in claims with a later expiry, keep the vendor's signature.
    let genuine = issue(&claims(), &vendor);
    let mut longer = claims();
    longer.expires_at += 365 * DAY;
    let other = issue(&longer, &mallory);
    let parts: Vec<&str> = genuine.expose().split('.').collect();
    let other_parts: Vec<&str> = other.expose().split('.').collect();
    let spliced = format!("hl1.{}.{}", other_parts[1], parts[2]);
    assert_eq!(
        verify_signature(&spliced, &trusted),
        Err(LicenceError::BadSignature)
    );
    assert_eq!(
        verify_signature(genuine.expose(), &[]),
        Err(LicenceError::NoTrustedKeys)
    );
}

#[test]
fn a_plugin_or_batch_signature_cannot_pass_as_a_licence() {
    let key = KeyPair::generate().unwrap();
    let segment = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let raw = URL_SAFE_NO_PAD.encode(key.sign(segment.as_bytes()));
    assert_eq!(
        verify_signature(&format!("hl1.{segment}.{raw}"), &[key.public_key()]),
        Err(LicenceError::BadSignature)
    );
}

#[test]
fn time_window_is_enforced_with_leeway() {
    let key = KeyPair::generate().unwrap();
    let token = issue(&claims(), &key);
    let trusted = [key.public_key()];
    let h = host("edge-7", None);
    let at = |now| verify(token.expose(), &trusted, &h, now);
    assert!(at(T0 - CLOCK_SKEW_LEEWAY_SECS).is_ok());
    assert_eq!(
        at(T0 - CLOCK_SKEW_LEEWAY_SECS - 1),
        Err(LicenceError::NotYetValid {
            issued_at: T0,
            now: T0 - CLOCK_SKEW_LEEWAY_SECS - 1
        })
    );
    assert!(at(T0 + 30 * DAY - 1).is_ok());
    assert_eq!(
        at(T0 + 30 * DAY),
        Err(LicenceError::Expired {
            expires_at: T0 + 30 * DAY,
            now: T0 + 30 * DAY
        })
    );
}

#[test]
fn scope_by_device_or_fleet() {
    let key = KeyPair::generate().unwrap();
    let token = issue(&claims(), &key);
    let trusted = [key.public_key()];
    let check = |h: HostIdentity| verify(token.expose(), &trusted, &h, T0);
    assert!(check(host("edge-7", None)).is_ok());
    assert!(check(host("edge-99", Some("north"))).is_ok());
    let err = check(host("edge-99", Some("south"))).unwrap_err();
    assert_eq!(
        err,
        LicenceError::OutOfScope {
            host_id: "edge-99".to_owned(),
            fleet: Some("south".to_owned())
        }
    );
    assert!(
        err.to_string().contains("\"edge-99\" in fleet \"south\""),
        "{err}"
    );

    let mut anywhere = claims();
    anywhere.scope = Scope::default();
    let token = issue(&anywhere, &key);
    assert!(verify(token.expose(), &trusted, &host("x", None), T0).is_ok());
}

#[test]
fn malformed_tokens_never_panic() {
    let key = KeyPair::generate().unwrap();
    let good = issue(&claims(), &key);
    let parts: Vec<&str> = good.expose().split('.').collect();
    let not_json = URL_SAFE_NO_PAD.encode(b"nope");
    let backwards = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&Claims {
            expires_at: T0 - 1,
            ..claims()
        })
        .unwrap(),
    );
    let long = "a".repeat(MAX_TOKEN_LEN + 1);
    for bad in [
        "".to_owned(),
        "hl1".to_owned(),
        "hl1..".to_owned(),
        "hl2.a.b".to_owned(),
        format!("hl2.{}.{}", parts[1], parts[2]),
        format!("{}.extra", good.expose()),
        format!("hl1.{}.!!", parts[1]),
        format!("hl1.{}.{}", parts[1], URL_SAFE_NO_PAD.encode([1u8; 10])),
        long,
    ] {
        let err = verify_signature(&bad, &[key.public_key()]).unwrap_err();
        assert!(matches!(err, LicenceError::Malformed(_)), "{bad}: {err}");
    }
    // Garbage claims under a signature that does not verify are refused as
    // forged before they are parsed.
    assert_eq!(
        verify_signature(&format!("hl1.{not_json}.{}", parts[2]), &[key.public_key()]),
        Err(LicenceError::BadSignature)
    );
    // Claims that decode but make no sense are malformed even if signed.
    let seg_sig = URL_SAFE_NO_PAD.encode(key.sign(&message(&backwards)));
    assert!(matches!(
        verify_signature(&format!("hl1.{backwards}.{seg_sig}"), &[key.public_key()]),
        Err(LicenceError::Malformed(_))
    ));
    assert!(matches!(
        decode_unverified(&format!("hl1.{not_json}.{}", parts[2])),
        Err(LicenceError::Malformed(_))
    ));
}

#[test]
fn unknown_claim_fields_are_ignored_within_hl1() {
    let key = KeyPair::generate().unwrap();
    let mut doc = serde_json::to_value(claims()).unwrap();
    doc["note"] = "added by a newer vendor tool".into();
    let segment = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&doc).unwrap());
    let sig = URL_SAFE_NO_PAD.encode(key.sign(&message(&segment)));
    let got = verify_signature(&format!("hl1.{segment}.{sig}"), &[key.public_key()]).unwrap();
    assert_eq!(got, claims());
}

#[test]
fn decode_unverified_reads_claims_of_any_signer() {
    let token = issue(&claims(), &KeyPair::generate().unwrap());
    assert_eq!(decode_unverified(token.expose()).unwrap(), claims());
}

#[test]
fn token_never_prints_itself() {
    let token = issue(&claims(), &KeyPair::generate().unwrap());
    let secret_part = token.expose().split('.').nth(2).unwrap().to_owned();
    for shown in [format!("{token:?}"), format!("{token}")] {
        assert!(!shown.contains(&secret_part), "{shown}");
        assert!(!shown.contains("hl1."), "{shown}");
    }
    assert_eq!(Token::new(format!("  {}\n", token.expose())), token);
}

#[test]
fn features_allow_what_they_list() {
    let f = claims().features;
    assert!(f.allows_kind("validator"));
    assert!(!f.allows_kind("privacy"));
    assert!(f.allows_plugin_count(4));
    assert!(!f.allows_plugin_count(5));
    let open = Features::default();
    assert!(open.allows_kind("anything"));
    assert!(open.allows_plugin_count(usize::MAX));
}
