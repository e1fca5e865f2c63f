"""REST endpoints under /api/v1/. The schema is already the caller's tenant (set by authentication),
so every queryset here sees only that tenant's rows; another tenant's object is simply a 404."""
from rest_framework import viewsets

from . import selectors
from .serializers import ContactListSerializer


class ContactListViewSet(viewsets.ModelViewSet):
    serializer_class = ContactListSerializer

    def get_queryset(self):
        return selectors.contact_lists()
