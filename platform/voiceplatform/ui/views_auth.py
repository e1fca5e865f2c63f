"""Sign-in and sign-out with Django's own views and our templates. A session belongs to one host's
schema, so signing in on acme.example.com says nothing about globex.example.com."""
from django.contrib.auth import views as auth_views

from .access import on_public_host
from .forms import SignInForm


class SignInView(auth_views.LoginView):
    template_name = "ui/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        if on_public_host(self.request):
            return "/platform/carriers/" if self.request.user.is_staff else "/"
        return "/campaigns/"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["platform"] = on_public_host(self.request)
        return context


class SignOutView(auth_views.LogoutView):
    next_page = "/accounts/login/"
