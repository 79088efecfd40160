/**
 * The sign-in view and the signed-in account box (who, "Sign out").
 * Emits "session" ({user}) on success; listens to "session" to switch views.
 *
 * @module ui/signin
 */

import { signIn } from "../api.js";
import { byId, setText, show } from "../dom.js";

/**
 * @param {object} options
 * @param {import("../bus.js").Bus} options.bus
 * @param {() => Promise<void>} options.onSignOut   hang up, forget the session
 */
export function mountSignIn({ bus, onSignOut }) {
  const view = byId("signin-view");
  const form = /** @type {HTMLFormElement} */ (byId("signin-form"));
  const username = /** @type {HTMLInputElement} */ (byId("username"));
  const password = /** @type {HTMLInputElement} */ (byId("password"));
  const button = /** @type {HTMLButtonElement} */ (byId("sign-in"));
  const account = byId("account");
  const who = byId("who");
  const signOutButton = /** @type {HTMLButtonElement} */ (byId("sign-out"));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!username.value.trim() || !password.value) {
      bus.emit("alert", { text: "Enter your username and password." });
      (username.value.trim() ? password : username).focus();
      return;
    }
    button.disabled = true;
    bus.emit("alert", { text: "" });
    const result = await signIn(username.value.trim(), password.value);
    button.disabled = false;
    if (result.user) {
      password.value = "";
      bus.emit("session", { user: result.user });
    } else {
      bus.emit("alert", { text: result.error || "Sign-in failed." });
      password.select();
      password.focus();
    }
  });

  signOutButton.addEventListener("click", async () => {
    signOutButton.disabled = true;
    await onSignOut();
    signOutButton.disabled = false;
  });

  bus.on("session", ({ user, expired }) => {
    show(view, !user);
    show(account, Boolean(user));
    if (user) {
      const name = user.display_name || user.username;
      setText(who, user.extension ? `${name} · ext. ${user.extension}` : name);
      who.title = `Signed in as ${user.username}`;
    } else {
      setText(who, "");
      if (expired) bus.emit("alert", { text: "Your session has ended. Sign in again." });
      username.focus();
    }
  });
}
