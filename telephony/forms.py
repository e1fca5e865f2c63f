"""The carrier form shared by the platform admin and the platform pages: the digest password is
write-only (never rendered back) and stored encrypted; host and port are checked by the model."""
from django import forms

from .models import Carrier


class CarrierForm(forms.ModelForm):
    password = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput(render_value=False), label="Digest password",
        help_text="stored encrypted and never shown again; leave empty to keep the current one",
    )
    clear_password = forms.BooleanField(required=False, label="Remove the stored password")

    class Meta:
        model = Carrier
        fields = ["name", "host", "port", "transport", "username", "password", "clear_password", "from_domain",
                  "priority", "weight", "region", "max_cps", "max_concurrent", "strip_digits", "add_prefix", "allows_refer",
                  "enabled"]
        labels = {"max_cps": "Max calls per second", "max_concurrent": "Max concurrent calls"}

    def save(self, commit=True):
        carrier = super().save(commit=False)
        if self.cleaned_data.get("clear_password"):
            carrier.set_password("")
        elif self.cleaned_data.get("password"):
            carrier.set_password(self.cleaned_data["password"])
        if commit:
            carrier.save()
        return carrier
