//! `berthctl exec`: runs a command in a task's container through ExecuteCommand and the
//! session's stream (the frames are `contract::EXEC_PATH`'s), relaying stdin, stdout, stderr
//! and, with `-t`, a terminal in raw mode with its size; exits with the command's status.

use std::io::{Read, Write};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::{CliError, Client};
use crate::contract::{
    ExecClientMessage, ExecOpen, ExecServerMessage, TerminalSize, EXEC_STDERR, EXEC_STDOUT,
};

pub struct ExecArgs<'a> {
    pub cluster: &'a str,
    pub task: &'a str,
    pub container: Option<&'a str>,
    /// Send our stdin to the command.
    pub interactive: bool,
    /// Run it on a terminal, ours in raw mode meanwhile.
    pub tty: bool,
    pub command: &'a [String],
}

/// The words as one command line that splits back into them (ExecuteCommand takes a string).
pub fn command_line(words: &[String]) -> Result<String, CliError> {
    words
        .iter()
        .map(|w| {
            shlex::try_quote(w)
                .map(|q| q.into_owned())
                .map_err(|e| CliError::Exec(format!("cannot pass {w:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|w| w.join(" "))
}

/// The terminal on stdin in raw mode while this lives; restored on drop.
struct RawTerminal {
    saved: libc::termios,
}

impl RawTerminal {
    fn enter() -> Option<Self> {
        // SAFETY: tcgetattr and tcsetattr read and write the termios we own; fd 0 is stdin.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Self { saved })
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}

/// The size of the terminal on stdout (or stdin), if there is one.
fn terminal_size() -> Option<TerminalSize> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we own.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some(TerminalSize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            });
        }
    }
    None
}

fn is_terminal(fd: i32) -> bool {
    // SAFETY: isatty only looks at the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Reads stdin on a thread of its own (a read cannot be cancelled; the process exits past
/// it), chunk by chunk; None is its end.
fn read_stdin() -> mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.blocking_send(None);
                    return;
                }
                Ok(n) => {
                    if tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn text<T: serde::Serialize>(m: &T) -> Message {
    Message::Text(serde_json::to_string(m).unwrap_or_default().into())
}

/// Runs the command; its exit status.
pub async fn run(client: &Client, a: &ExecArgs<'_>) -> Result<i32, CliError> {
    let mut body = json!({
        "cluster": a.cluster,
        "task": a.task,
        "command": command_line(a.command)?,
        "interactive": true,
    });
    if let Some(c) = a.container {
        body["container"] = json!(c);
    }
    let answer = client.call("ExecuteCommand", body).await?;
    let session = &answer["session"];
    let (Some(url), Some(token)) = (
        session["streamUrl"].as_str(),
        session["tokenValue"].as_str(),
    ) else {
        return Err(CliError::Exec(format!(
            "ExecuteCommand answered no session: {answer}"
        )));
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| CliError::Exec(format!("cannot open the exec stream {url}: {e}")))?;

    let size = if a.tty { terminal_size() } else { None };
    let open = ExecOpen {
        token_value: token.to_string(),
        tty: a.tty,
        rows: size.map_or(24, |s| s.rows),
        cols: size.map_or(80, |s| s.cols),
    };
    let send_err = |e: tokio_tungstenite::tungstenite::Error| {
        CliError::Exec(format!("the exec stream broke off: {e}"))
    };
    ws.send(text(&open)).await.map_err(send_err)?;
    let _raw = (a.tty && a.interactive && is_terminal(libc::STDIN_FILENO))
        .then(RawTerminal::enter)
        .flatten();
    let mut stdin = if a.interactive {
        Some(read_stdin())
    } else {
        if !a.tty {
            // No stdin: the command reads end-of-file at once.
            ws.send(text(&ExecClientMessage {
                stdin_eof: true,
                ..Default::default()
            }))
            .await
            .map_err(send_err)?;
        }
        None
    };
    let mut resized = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .ok()
        .filter(|_| a.tty);

    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Binary(b))) => {
                    let (channel, data) = b.split_first().unwrap_or((&0, &[]));
                    let written = match *channel {
                        EXEC_STDOUT => { let mut o = std::io::stdout().lock(); o.write_all(data).and_then(|()| o.flush()) }
                        EXEC_STDERR => { let mut e = std::io::stderr().lock(); e.write_all(data).and_then(|()| e.flush()) }
                        _ => Ok(()),
                    };
                    // A closed stdout (`| head`) ends the session; the command is killed.
                    if written.is_err() {
                        return Ok(141);
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let m: ExecServerMessage = serde_json::from_str(&t)
                        .map_err(|e| CliError::Exec(format!("unexpected message on the exec stream: {e}")))?;
                    if let Some(code) = m.exit_code {
                        return Ok(code);
                    }
                    if let Some(e) = m.error {
                        return Err(CliError::Exec(e));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(send_err(e)),
                None => return Err(CliError::Exec("the exec stream ended without the command's exit status".into())),
            },
            chunk = async { match stdin.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                match chunk.flatten() {
                    Some(bytes) => ws.send(Message::Binary(bytes.into())).await.map_err(send_err)?,
                    None => {
                        stdin = None;
                        ws.send(text(&ExecClientMessage { stdin_eof: true, ..Default::default() }))
                            .await
                            .map_err(send_err)?;
                    }
                }
            }
            _ = async { match resized.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                if let Some(size) = terminal_size() {
                    ws.send(text(&ExecClientMessage { resize: Some(size), ..Default::default() }))
                        .await
                        .map_err(send_err)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_splits_back_into_its_words() {
        let words: Vec<String> = ["sh", "-c", "echo \"$HOME\" 'x'; exit 3", "a b", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let line = command_line(&words).unwrap();
        assert_eq!(shlex::split(&line).unwrap(), words);
        assert_eq!(
            crate::domain::exec::command_words(&line).unwrap(),
            words,
            "as berth-cp splits it"
        );
    }
}
