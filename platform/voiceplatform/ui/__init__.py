"""The browser UI: server-rendered pages for business users (tenant host) and platform admins (public
host). Views are thin: they check who is asking and what they typed (forms), then call the existing
services and selectors."""
