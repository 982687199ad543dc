//! The vocabulary of the synthetic app: weighted choices and plain-text messages.

use crate::rng::Rng;

/// Picks from `(item, weight)` pairs.
pub fn pick<T: Copy>(r: &mut Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = r.below(u64::from(total)) as u32;
    for (item, w) in items {
        if x < *w {
            return *item;
        }
        x -= w;
    }
    items[0].0
}

pub const EVENT_TYPES: &[(&str, u32)] = &[
    ("screen_view", 30),
    ("tap", 20),
    ("api_call", 25),
    ("app_open", 8),
    ("login", 3),
    ("logout", 2),
    ("purchase", 2),
    ("error", 5),
];

pub const APP_VERSIONS: &[(&str, u32)] =
    &[("3.1.0", 15), ("3.1.1", 35), ("3.2.0", 30), ("3.2.1", 20)];
pub const IOS_VERSIONS: &[(&str, u32)] = &[("16.7", 15), ("17.6", 45), ("18.1", 40)];
pub const ANDROID_VERSIONS: &[(&str, u32)] = &[("12", 20), ("13", 30), ("14", 35), ("15", 15)];
pub const IOS_DEVICES: &[(&str, u32)] = &[
    ("iPhone12,1", 15),
    ("iPhone14,5", 30),
    ("iPhone15,2", 35),
    ("iPhone16,1", 20),
];
pub const ANDROID_DEVICES: &[(&str, u32)] = &[
    ("Pixel 7", 15),
    ("Pixel 8", 15),
    ("SM-A546B", 30),
    ("SM-S918B", 20),
    ("moto g84", 20),
];
pub const COUNTRIES: &[(&str, u32)] = &[
    ("MX", 30),
    ("CO", 15),
    ("AR", 12),
    ("CL", 8),
    ("PE", 7),
    ("ES", 10),
    ("US", 10),
    ("BR", 8),
];
pub const SCREENS: &[(&str, u32)] = &[
    ("home", 40),
    ("search", 20),
    ("product", 20),
    ("cart", 10),
    ("checkout", 5),
    ("profile", 5),
];
pub const ENDPOINTS: &[(&str, u32)] = &[
    ("/v1/feed", 40),
    ("/v1/search", 20),
    ("/v1/products", 20),
    ("/v1/cart", 10),
    ("/v1/payments", 5),
    ("/v1/auth/refresh", 5),
];
pub const HTTP_FAILURES: &[((i32, &str), u32)] = &[
    ((500, "HTTP_500"), 30),
    ((503, "HTTP_503"), 20),
    ((504, "GATEWAY_TIMEOUT"), 15),
    ((401, "AUTH_EXPIRED"), 20),
    ((429, "RATE_LIMITED"), 15),
];
pub const ERROR_CODES: &[(&str, u32)] = &[
    ("NET_TIMEOUT", 35),
    ("DB_LOCKED", 10),
    ("AUTH_EXPIRED", 15),
    ("PAYMENT_DECLINED", 10),
    ("NULL_POINTER", 20),
    ("OUT_OF_MEMORY", 10),
];

/// A plain-text line as apps and libraries print them.
pub fn plain_text(r: &mut Rng, ts: i64) -> String {
    match r.below(4) {
        0 => format!(
            "Fatal Exception: java.lang.IllegalStateException: Fragment not attached\n\tat com.shop.app.ui.ProductFragment.onResume(ProductFragment.kt:{})\n\tat androidx.fragment.app.Fragment.performResume(Fragment.java:3180)",
            100 + r.below(300)
        ),
        1 => format!(
            "[OkHttp] --> GET https://api.shop.example/v1/feed?page={} (took {}ms)",
            r.below(20),
            r.below(900)
        ),
        2 => format!(
            "objc[{}]: Class _TtC4Shop12CartObserver is implemented in both ShopKit and Shop. One of the two will be used.",
            r.below(60_000)
        ),
        _ => format!(
            "GC freed {}KB AllocSpace objects, {}% free at {}",
            r.below(9_000),
            r.below(60),
            ts % 100_000
        ),
    }
}
