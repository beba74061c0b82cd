//! Configuration: every setting is a flag, an environment variable (`RINGFENCE_*`) and a key
//! of an optional TOML file. Precedence: file < environment < flag. Unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use ringfence_core::net::valid_host_pattern;
use ringfence_jobs::outbound::MediaHosts;
use ringfence_store_postgres::DatabaseUrl;
use serde::Deserialize;

/// Settings shared by every command (listed under their own heading in each command's help).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// TOML file with any of the settings below (flags and environment override it).
    #[arg(long, global = true, env = "RINGFENCE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data folder: master key, recordings, and the SQLite call log and vault unless URLs name
    /// other databases. Default ./ringfence-data
    #[arg(long, global = true, env = "RINGFENCE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Address the server listens on. Default 127.0.0.1:8080
    #[arg(long, global = true, env = "RINGFENCE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Call-log database: postgres://user@host:5432/database, or sqlite://PATH. Default: the
    /// SQLite file ringfence.db inside --data
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_DATABASE_URL",
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// Most connections this process keeps to a PostgreSQL call log (its vault gets a quarter,
    /// at least 2). Several instances on one server keep their sum below its max_connections.
    /// Default 16
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_DATABASE_MAX_CONNECTIONS",
        value_name = "N"
    )]
    pub database_max_connections: Option<u32>,
    /// Vault database, a database of its own (postgres://… or sqlite://PATH). Default: the
    /// SQLite file vault.db inside --data
    #[arg(long, global = true, env = "RINGFENCE_VAULT_URL", value_name = "URL")]
    pub vault_url: Option<String>,
    /// Recordings store. Default: folder inside --data
    #[arg(long, global = true, env = "RINGFENCE_BLOB_URL", value_name = "URL")]
    pub blob_url: Option<String>,
    /// Master key file; created with mode 0600 if missing. Default master.key inside --data
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_MASTER_KEY_FILE",
        value_name = "PATH"
    )]
    pub master_key_file: Option<PathBuf>,
    /// Log filter (tracing syntax), e.g. info or ringfence=debug. Default info
    #[arg(long, global = true, env = "RINGFENCE_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format: text or json. Default text
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<String>,
    /// Largest recording accepted, in bytes. Default 268435456 (256 MiB)
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_MAX_RECORDING_BYTES",
        value_name = "BYTES"
    )]
    pub max_recording_bytes: Option<u64>,
    /// How often `serve` runs automatic redaction, in seconds. Default 60
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_SWEEP_INTERVAL_SECS",
        value_name = "SECONDS"
    )]
    pub sweep_interval_secs: Option<u64>,
    /// Offline IP-to-country database (MaxMind DB format) for the visit's share of GDPR scope.
    /// Default: geoip.mmdb inside --data, else .geoip/geo-whois-asn-country.mmdb (made by
    /// scripts/fetch-geoip); without one, scope comes from the caller's number alone
    #[arg(long, global = true, env = "RINGFENCE_GEOIP_FILE", value_name = "PATH")]
    pub geoip_file: Option<PathBuf>,
    /// The URL the outside world reaches this server at (e.g. https://calls.example.com),
    /// used to check webhook signatures behind a reverse proxy. Default: the request's Host
    #[arg(long, global = true, env = "RINGFENCE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Hosts Twilio recordings may be downloaded from, comma-separated: names, `*.suffix`
    /// for any name below a suffix, or IP addresses. Recording URLs on other hosts are
    /// refused, and so are redirects off them. Default api.twilio.com,*.twilio.com,*.twiliocdn.com
    #[arg(
        long,
        global = true,
        env = "RINGFENCE_TWILIO_MEDIA_HOSTS",
        value_name = "HOSTS",
        value_delimiter = ','
    )]
    pub twilio_media_hosts: Option<Vec<String>>,
    /// Let recording downloads reach loopback addresses (127.0.0.0/8, ::1, localhost), with
    /// plain http, when the host is also in --twilio-media-hosts: a local relay or a test
    /// provider. Private, link-local and other non-public addresses are never reached. Default false
    #[arg(long, global = true, env = "RINGFENCE_ALLOW_LOCAL_FETCH", value_name = "BOOL",
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_local_fetch: Option<bool>,
    /// Let webhook recipients be loopback addresses (http or https to 127.0.0.0/8, ::1,
    /// localhost): local relays. Other non-public addresses are always refused. Default false
    #[arg(long, global = true, env = "RINGFENCE_ALLOW_LOCAL_RELAYS", value_name = "BOOL",
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_local_relays: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    listen: Option<String>,
    database_url: Option<String>,
    database_max_connections: Option<u32>,
    vault_url: Option<String>,
    blob_url: Option<String>,
    master_key_file: Option<PathBuf>,
    log: Option<String>,
    log_format: Option<String>,
    max_recording_bytes: Option<u64>,
    sweep_interval_secs: Option<u64>,
    geoip_file: Option<PathBuf>,
    public_url: Option<String>,
    twilio_media_hosts: Option<Vec<String>>,
    allow_local_fetch: Option<bool>,
    allow_local_relays: Option<bool>,
}

/// Where a database is: a SQLite file, or a PostgreSQL database (whose URL never prints its
/// credentials: see [`DatabaseUrl`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    Sqlite(PathBuf),
    Postgres(DatabaseUrl),
}

impl DatabaseLocation {
    /// How the location is named in messages: a file's path, or the URL without credentials.
    pub fn describe(&self) -> String {
        match self {
            DatabaseLocation::Sqlite(path) => path.display().to_string(),
            DatabaseLocation::Postgres(url) => url.to_string(),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseLocation::Postgres(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    Folder(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The resolved configuration. Holds no secret: the master key stays in its file.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub database: DatabaseLocation,
    pub vault: DatabaseLocation,
    /// Connections to a PostgreSQL call log per process (the vault gets a quarter, at least 2).
    pub database_max_connections: u32,
    pub blobs: BlobLocation,
    pub master_key_file: PathBuf,
    pub log: String,
    pub log_format: LogFormat,
    pub max_recording_bytes: u64,
    pub sweep_interval_secs: u64,
    /// The IP-to-country database, if one is configured or found.
    pub geoip: Option<GeoIpLocation>,
    /// The server's public base URL (no trailing slash).
    pub public_url: Option<String>,
    /// The first delay of the sign-in throttle, which the others double from
    /// (`ringfence_core::throttle`); not a flag: tests lengthen it so that no delay runs out
    /// while they look at it.
    pub sign_in_first_delay_ms: i64,
    /// Where Twilio recordings may be downloaded from (hosts, and whether loopback is open).
    pub twilio_media: MediaHosts,
    /// Whether webhook recipients may be loopback addresses (local relays).
    pub allow_local_relays: bool,
}

/// Where the IP-to-country database is, and whether the operator asked for it by name (then
/// a missing file is an error, not a warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeoIpLocation {
    pub path: PathBuf,
    pub explicit: bool,
}

/// The default places of the IP-to-country database, in order.
fn default_geoip(data: &Path) -> Option<GeoIpLocation> {
    [
        data.join("geoip.mmdb"),
        PathBuf::from(".geoip/geo-whois-asn-country.mmdb"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .map(|path| GeoIpLocation {
        path,
        explicit: false,
    })
}

/// A database URL: `sqlite://PATH` or `postgres://…`. Errors never repeat the URL, which
/// may hold a password.
fn database_location(url: &str, what: &str) -> anyhow::Result<DatabaseLocation> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if path.is_empty() {
            bail!("{what}: sqlite URL has no path (expected sqlite:///path/to/file.db)");
        }
        return Ok(DatabaseLocation::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let url: DatabaseUrl = url.parse().map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        return Ok(DatabaseLocation::Postgres(url));
    }
    bail!(
        "{what}: unsupported URL scheme (expected sqlite://PATH or postgres://user@host/database)"
    )
}

impl Config {
    /// Resolves flags and environment (already merged by clap) over the optional file.
    pub fn resolve(args: &GlobalArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let data = args
            .data
            .clone()
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from("./ringfence-data"));
        let listen_text = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen_text
            .parse()
            .with_context(|| "--listen must be an address like 127.0.0.1:8080".to_owned())?;
        let database = match args.database_url.clone().or(file.database_url) {
            Some(url) => database_location(&url, "--database-url")?,
            None => DatabaseLocation::Sqlite(data.join("ringfence.db")),
        };
        let vault = match args.vault_url.clone().or(file.vault_url) {
            Some(url) => database_location(&url, "--vault-url")?,
            None => DatabaseLocation::Sqlite(data.join("vault.db")),
        };
        if vault == database {
            bail!(
                "--vault-url must not be the call-log database: keys are kept apart from the data they open"
            );
        }
        let database_max_connections = args
            .database_max_connections
            .or(file.database_max_connections)
            .unwrap_or(16);
        if database_max_connections < 2 {
            bail!("--database-max-connections must be at least 2");
        }
        let blobs = match args.blob_url.clone().or(file.blob_url) {
            Some(url) => match url.strip_prefix("file://") {
                Some(path) if !path.is_empty() => BlobLocation::Folder(PathBuf::from(path)),
                _ if url.starts_with("s3://") => bail!(
                    "--blob-url: S3 is not supported by this version yet; use a folder (file:///path)"
                ),
                _ => bail!("--blob-url: expected file:///path"),
            },
            None => BlobLocation::Folder(data.join("recordings")),
        };
        let master_key_file = args
            .master_key_file
            .clone()
            .or(file.master_key_file)
            .unwrap_or_else(|| data.join("master.key"));
        let log = args
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "info".to_owned());
        let log_format = match args.log_format.clone().or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => bail!("--log-format must be text or json"),
        };
        let max_recording_bytes = args
            .max_recording_bytes
            .or(file.max_recording_bytes)
            .unwrap_or(256 << 20);
        if max_recording_bytes == 0 {
            bail!("--max-recording-bytes must be positive");
        }
        let sweep_interval_secs = args
            .sweep_interval_secs
            .or(file.sweep_interval_secs)
            .unwrap_or(60);
        if sweep_interval_secs == 0 {
            bail!("--sweep-interval-secs must be positive");
        }
        let geoip = match args.geoip_file.clone().or(file.geoip_file) {
            Some(path) => Some(GeoIpLocation {
                path,
                explicit: true,
            }),
            None => default_geoip(&data),
        };
        let public_url = match args.public_url.clone().or(file.public_url) {
            Some(url) => {
                let url = url.trim().trim_end_matches('/').to_owned();
                let valid = (url.starts_with("https://") || url.starts_with("http://"))
                    && url
                        .split("://")
                        .nth(1)
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#']));
                if !valid {
                    bail!("--public-url must be an http(s) URL such as https://calls.example.com");
                }
                Some(url)
            }
            None => None,
        };
        let hosts = match args.twilio_media_hosts.clone().or(file.twilio_media_hosts) {
            Some(hosts) => {
                let hosts: Vec<String> = hosts
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect();
                if hosts.is_empty() || !hosts.iter().all(|h| valid_host_pattern(h)) {
                    bail!(
                        "--twilio-media-hosts must list host names, *.suffix patterns or IP addresses, such as api.twilio.com,*.twilio.com"
                    );
                }
                hosts
            }
            None => MediaHosts::default().hosts,
        };
        let twilio_media = MediaHosts {
            hosts,
            allow_local: args
                .allow_local_fetch
                .or(file.allow_local_fetch)
                .unwrap_or(false),
        };
        let allow_local_relays = args
            .allow_local_relays
            .or(file.allow_local_relays)
            .unwrap_or(false);
        Ok(Config {
            data,
            listen,
            database,
            vault,
            database_max_connections,
            blobs,
            master_key_file,
            log,
            log_format,
            max_recording_bytes,
            sweep_interval_secs,
            geoip,
            public_url,
            sign_in_first_delay_ms: 1_000,
            twilio_media,
            allow_local_relays,
        })
    }

    /// A configuration with everything inside `data`, listening on port 0 (tests, benches).
    pub fn in_folder(data: &Path) -> Config {
        Config {
            data: data.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database: DatabaseLocation::Sqlite(data.join("ringfence.db")),
            vault: DatabaseLocation::Sqlite(data.join("vault.db")),
            database_max_connections: 16,
            blobs: BlobLocation::Folder(data.join("recordings")),
            master_key_file: data.join("master.key"),
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            max_recording_bytes: 256 << 20,
            sweep_interval_secs: 60,
            geoip: None,
            public_url: None,
            sign_in_first_delay_ms: 1_000,
            twilio_media: MediaHosts::default(),
            allow_local_relays: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_environment_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rf.toml");
        std::fs::write(
            &file,
            "data = \"/from/file\"\nlisten = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let args = GlobalArgs {
            config: Some(file.clone()),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.data, PathBuf::from("/from/file"));
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(
            c.database,
            DatabaseLocation::Sqlite(PathBuf::from("/from/file/ringfence.db"))
        );
        let args = GlobalArgs {
            config: Some(file),
            data: Some("/from/flag".into()),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&args).unwrap().data,
            PathBuf::from("/from/flag")
        );
    }

    #[test]
    fn outbound_settings_default_to_twilio_and_no_local_addresses() {
        let c = Config::resolve(&GlobalArgs::default()).unwrap();
        assert_eq!(c.twilio_media, MediaHosts::default());
        assert!(!c.twilio_media.allow_local && !c.allow_local_relays);
        assert!(c.twilio_media.hosts.iter().any(|h| h == "api.twilio.com"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rf.toml");
        std::fs::write(
            &file,
            "twilio_media_hosts = [\"media.example.com\", \"*.Example.net\"]\nallow_local_fetch = true\nallow_local_relays = true\n",
        )
        .unwrap();
        let c = Config::resolve(&GlobalArgs {
            config: Some(file.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.twilio_media.hosts, ["media.example.com", "*.example.net"]);
        assert!(c.twilio_media.allow_local && c.allow_local_relays);
        let c = Config::resolve(&GlobalArgs {
            config: Some(file),
            twilio_media_hosts: Some(vec!["api.twilio.com".into()]),
            allow_local_fetch: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.twilio_media.hosts, ["api.twilio.com"]);
        assert!(!c.twilio_media.allow_local && c.allow_local_relays);
        for bad in [
            vec![],
            vec!["https://api.twilio.com".to_owned()],
            vec!["*".into()],
        ] {
            assert!(
                Config::resolve(&GlobalArgs {
                    twilio_media_hosts: Some(bad.clone()),
                    ..Default::default()
                })
                .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn local_address_flags_stand_alone_or_take_a_value() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            global: GlobalArgs,
            rest: Vec<String>,
        }
        let cli = Cli::try_parse_from([
            "ringfence",
            "--allow-local-fetch",
            "--allow-local-relays=false",
            "--twilio-media-hosts",
            "api.twilio.com,127.0.0.1",
            "serve",
        ])
        .unwrap();
        assert_eq!(cli.global.allow_local_fetch, Some(true));
        assert_eq!(cli.global.allow_local_relays, Some(false));
        assert_eq!(
            cli.global.twilio_media_hosts,
            Some(vec!["api.twilio.com".to_owned(), "127.0.0.1".to_owned()])
        );
        assert_eq!(
            cli.rest,
            ["serve"],
            "the flag does not take the command as its value"
        );
    }

    #[test]
    fn postgres_urls_name_databases_and_never_repeat_their_credentials() {
        let c = Config::resolve(&GlobalArgs {
            database_url: Some("postgres://rf:s3cret-pw@db.example.com:5432/calls".into()),
            vault_url: Some("postgresql://rf:s3cret-pw@db.example.com/keys".into()),
            database_max_connections: Some(40),
            ..Default::default()
        })
        .unwrap();
        assert!(c.database.is_postgres() && c.vault.is_postgres());
        assert_eq!(
            c.database.describe(),
            "postgres://db.example.com:5432/calls"
        );
        assert_eq!(c.database_max_connections, 40);
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
        for (database_url, vault_url) in [
            // The vault in the call log's own database.
            (
                "postgres://rf:s3cret-pw@db.example.com/calls",
                "postgres://rf:s3cret-pw@db.example.com/calls",
            ),
            // No database named.
            ("postgres://rf:s3cret-pw@db.example.com", "sqlite:///v.db"),
            // Not a URL PostgreSQL takes.
            (
                "postgres://rf:s3cret-pw@db.example.com/calls?sslmode=sometimes",
                "sqlite:///v.db",
            ),
        ] {
            let error = Config::resolve(&GlobalArgs {
                database_url: Some(database_url.into()),
                vault_url: Some(vault_url.into()),
                ..Default::default()
            })
            .expect_err(database_url);
            assert!(!format!("{error:#}").contains("s3cret"), "{error:#}");
        }
        assert!(
            Config::resolve(&GlobalArgs {
                database_max_connections: Some(1),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rf.toml");
        std::fs::write(&file, "dta = \"/typo\"\n").unwrap();
        assert!(
            Config::resolve(&GlobalArgs {
                config: Some(file),
                ..Default::default()
            })
            .is_err()
        );
        for args in [
            GlobalArgs {
                listen: Some("localhost".into()),
                ..Default::default()
            },
            GlobalArgs {
                database_url: Some("mysql://x".into()),
                ..Default::default()
            },
            GlobalArgs {
                log_format: Some("xml".into()),
                ..Default::default()
            },
            GlobalArgs {
                database_url: Some("sqlite:///same.db".into()),
                vault_url: Some("sqlite:///same.db".into()),
                ..Default::default()
            },
        ] {
            assert!(Config::resolve(&args).is_err(), "{args:?}");
        }
    }
}
