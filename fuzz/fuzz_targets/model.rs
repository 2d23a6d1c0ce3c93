//! The SDK's model deserializers on any bytes: `Resource` and `Bundle` either refuse with an
//! error or read a value that writes back to JSON which reads again to the same value
//! (lossless round trip). Uses only `epic_fhir::model::from_slice` and `Serialize`, so it
//! holds for any implementation of the model.
#![no_main]

use epic_fhir::model::{Bundle, Resource};
use libfuzzer_sys::fuzz_target;

fn round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let Ok(value) = epic_fhir::model::from_slice::<T>(data) else {
        return;
    };
    let written = serde_json::to_vec(&value).expect("a value read writes back");
    let again = epic_fhir::model::from_slice::<T>(&written).unwrap_or_else(|e| {
        panic!(
            "its own output does not read back: {e}\n{}",
            String::from_utf8_lossy(&written)
        )
    });
    let rewritten = serde_json::to_vec(&again).expect("writes back");
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(&rewritten),
        "the round trip changed the value"
    );
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Resource>(data);
    round_trip::<Bundle>(data);
});
